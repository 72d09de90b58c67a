"""The tutorials in ``tutorials/`` run end to end (tiny settings) and write their figures.

Each tutorial is executed in-process with :func:`runpy.run_path` (one torch import for all),
with ``LATENTODE_TUTORIAL_FAST=1`` and ``LATENTODE_TUTORIAL_OUT`` pointing at ``tmp_path``. In
fast mode no tutorial needs the PhysioNet archive (02 falls back to the bundled sample), so none
is skipped when the archive is absent.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest
from _settings import fit_uncalibrated

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"

#: tutorial -> figure files it must write
EXPECTED = {
    "01_quickstart.py": ["01_quickstart.png"],
    "02_icu_forecasting.py": ["02_icu_forecast.png", "02_icu_mse.png"],
    "03_sklearn_integration.py": ["03_grid_search.png", "03_best_model.latentode"],
    "04_irregular_sampling_uncertainty.py": ["04_periodic_uncertainty.png",
                                             "04_oscillator_poisson.png"],
    "05_mortality.py": ["05_mortality_roc.png"],
}

#: tutorials that show point predictions only (no quantiles, bands or recalibration): in the
#: test their fits skip the interval calibration, nine tenths of their run time in fast mode
POINTS_ONLY = {"01_quickstart.py", "02_icu_forecasting.py"}
#: what a tutorial that shows intervals would call (then it may not be in POINTS_ONLY)
_INTERVAL_WORDS = ("quantile", "plot_forecast", "recalibrate", "coverage", "interval")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one intra-op thread; restore the setting afterwards."""
    pytest.importorskip("torch")
    from latentode.utils import torch_threads

    with torch_threads(1):
        yield


def test_every_tutorial_is_listed() -> None:
    assert sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       one_thread: None) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    out = tmp_path / "out"
    monkeypatch.setenv("LATENTODE_TUTORIAL_FAST", "1")
    monkeypatch.setenv("LATENTODE_TUTORIAL_OUT", str(out))
    monkeypatch.delenv("LATENTODE_PHYSIONET", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may be written outside the out folder
    if name in POINTS_ONLY:
        source = (TUTORIALS / name).read_text(encoding="utf-8").lower()
        assert not [w for w in _INTERVAL_WORDS if w in source], f"{name} shows intervals"
        fit_uncalibrated(monkeypatch)
    runpy.run_path(str(TUTORIALS / name), run_name="__main__")
    for fname in EXPECTED[name]:
        path = out / fname
        assert path.is_file() and path.stat().st_size > 0, f"{name} did not write {fname}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
