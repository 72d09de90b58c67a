"""``n_jobs``: torch's intra-op threads while an estimator method runs, restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY

import latentode.estimator as estimator_module
from latentode import LatentODERegressor
from latentode.nn import LatentODE
from latentode.utils import available_cpus, resolve_n_jobs, torch_threads


@pytest.fixture
def caller_threads() -> Iterator[int]:
    """The caller runs with 3 threads (not a default of anything) and gets its setting back."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 5, (6, 12)), axis=1)
    return pd.DataFrame({"id": np.repeat(np.arange(6), 12), "t": t.ravel(),
                         "x": np.sin(t).ravel(), "y": np.cos(t).ravel()})


def test_resolve_n_jobs_follows_scikit_learn() -> None:
    cpus = available_cpus()
    assert resolve_n_jobs(None) == 1
    assert resolve_n_jobs(1) == 1
    assert resolve_n_jobs(2) == 2
    assert resolve_n_jobs(np.int64(5)) == 5
    assert resolve_n_jobs(-1) == cpus
    assert resolve_n_jobs(-2) == max(1, cpus - 1)
    assert resolve_n_jobs(-(cpus + 10)) == 1


@pytest.mark.parametrize("bad", [0, 1.5, True, "2", "all"])
def test_resolve_n_jobs_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="n_jobs must be None"):
        resolve_n_jobs(bad)


def test_torch_threads_restores_on_exit_and_on_error(caller_threads: int) -> None:
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(KeyError), torch_threads(2):
        assert torch.get_num_threads() == 2
        raise KeyError("boom")
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(ValueError, match="n_threads"), torch_threads(0):
        pass  # pragma: no cover
    assert torch.get_num_threads() == caller_threads


@pytest.mark.parametrize("n_jobs, expected", [(None, 1), (2, 2), (-1, "cpus")])
def test_every_method_runs_with_n_jobs_threads(
    n_jobs: int | None, expected: int | str, frame: pd.DataFrame, caller_threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = available_cpus() if expected == "cpus" else expected
    seen: list[int] = []
    solve = LatentODE.solve

    def spy(self: LatentODE, *args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return solve(self, *args, **kwargs)

    monkeypatch.setattr(LatentODE, "solve", spy)
    # the fit's interval calibration (hundreds of small solves, most of a minute under two
    # threads on a busy machine) is recorded where it starts and not run: it runs inside
    # ``fit``'s thread setting and sets none of its own, so its solves would see what it sees
    calibrations: list[int] = []
    monkeypatch.setattr(estimator_module, "calibrate_spread",
                        lambda *args, **kwargs: calibrations.append(torch.get_num_threads()))
    est = LatentODERegressor(**{**TINY, "max_epochs": 1}, poisson_process=True, n_jobs=n_jobs)
    calls = {
        "fit": lambda: est.fit(frame),
        "predict": lambda: est.predict(frame, quantiles=(0.1, 0.9), n_samples=3),
        "extrapolate": lambda: est.extrapolate(frame, horizon=1.0, n_points=3),
        "sample": lambda: est.sample(frame, n_samples=2),
        "score": lambda: est.score(frame),
        "predict_intensity": lambda: est.predict_intensity(frame),
    }
    for name, call in calls.items():
        seen.clear()
        call()
        assert seen and set(seen) == {expected}, name
        assert torch.get_num_threads() == caller_threads, name
    assert calibrations == [expected]  # the fit calibrated, once, under n_jobs threads


def test_threads_restored_when_a_method_raises(frame: pd.DataFrame,
                                               caller_threads: int) -> None:
    est = LatentODERegressor(**TINY, n_jobs=1).fit(frame)
    with pytest.raises(ValueError, match="quantiles|levels"):
        est.predict(frame, quantiles=(0.9, 0.1))
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(ValueError, match="time"):
        est.predict(frame.assign(t=np.nan))
    assert torch.get_num_threads() == caller_threads


@pytest.mark.parametrize("bad", [0, 2.0, "all", False])
def test_fit_refuses_bad_n_jobs_before_training(bad: object, frame: pd.DataFrame,
                                               caller_threads: int) -> None:
    est = LatentODERegressor(**TINY, n_jobs=bad)
    with pytest.raises(ValueError, match=r"n_jobs must be None .* got"):
        est.fit(frame)
    assert not hasattr(est, "model_")
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(ValueError, match="n_jobs"):
        est._validate_params()


def test_n_jobs_is_a_parameter(frame: pd.DataFrame, tmp_path) -> None:
    # the parameter's round trip, not the threads' use (above): no intervals' calibration,
    # whose many small solves under two threads take most of a minute on a busy machine
    est = LatentODERegressor(**TINY, n_jobs=2, calibrate=False)
    assert est.get_params()["n_jobs"] == 2
    assert LatentODERegressor().get_params()["n_jobs"] is None
    est.fit(frame)
    path = tmp_path / "m.latentode"
    est.save(path)
    assert LatentODERegressor.load(path).n_jobs == 2
