"""``input_fences``: per-channel fences of the values the model conditions on (issues #15 / #18).

The fences are fitted numbers of the data layer (``data.channel_fences``), the clamp an nn step
(``nn.fences.InputFences``, ``LatentODE.conditioning``); the likelihood scores the real values.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY, as_saved_before, rewrite_saved_config

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import Batch
from latentode.data import channel_fences
from latentode.nn import LatentODE
from latentode.nn.fences import InputFences

WIDTH = 2.0


# ------------------------------------------------------------------ data: the fences
def test_fences_are_the_central_quantiles_widened_by_their_range() -> None:
    # channel 0: 0, 1, ..., 20 -> 5th / 95th percentiles 1 and 19, range 18
    # channel 1: 21 values at 0 but two -> quantiles equal: no fences
    # channel 2: never observed -> no fences
    x = np.full((21, 3), np.nan)
    x[:, 0] = np.arange(21.0)
    x[:, 1] = 0.0
    x[[3, 7], 1] = [5.0, -4.0]
    low, high = channel_fences(x)
    assert low[0] == 1.0 - 2.0 * 18.0 and high[0] == 19.0 + 2.0 * 18.0
    assert low[1:].tolist() == [-math.inf, -math.inf] and high[1:].tolist() == [math.inf] * 2
    low, high = channel_fences(x, width=3.0, quantile=0.25)  # Tukey's far-out fences
    assert (low[0], high[0]) == (5.0 - 3 * 10.0, 15.0 + 3 * 10.0)


def test_fences_commute_with_standardisation_and_ignore_nan() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(36.8, 0.7, size=(500, 1))
    x[rng.random(500) < 0.3] = np.nan
    x[5] = -17.8  # one gross error barely moves them
    low, high = channel_fences(x)
    mean, std = np.nanmean(x), np.nanstd(x)
    low_s, high_s = channel_fences((x - mean) / std)
    np.testing.assert_allclose([low_s[0], high_s[0]], [(low[0] - mean) / std,
                                                       (high[0] - mean) / std], rtol=1e-12)
    clean = channel_fences(np.delete(x, 5, axis=0))
    assert abs(low[0] - clean[0][0]) < 0.1 and abs(high[0] - clean[1][0]) < 0.1
    assert low[0] > 30.0 and high[0] < 44.0  # the gross error lies far beyond


def test_normal_values_lie_inside_the_default_fences() -> None:
    x = np.random.default_rng(1).normal(size=(200_000, 1))
    low, high = channel_fences(x)
    assert 8.0 < -low[0] < 8.5 and 8.0 < high[0] < 8.5  # 8.2 standard deviations


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"width": 0.0}, "width must be a positive finite number"),
    ({"width": math.inf}, "width must be a positive finite number"),
    ({"quantile": 0.5}, r"quantile must lie in \(0, 0.5\)"),
    ({"quantile": 0.0}, r"quantile must lie in \(0, 0.5\)"),
])
def test_fence_arguments_are_checked(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        channel_fences(np.zeros((3, 1)), **kwargs)
    with pytest.raises(ValueError, match="infinite values"):
        channel_fences(np.array([[1.0], [np.inf]]))


# ------------------------------------------------------------------ nn: the clamp
def test_clamp_bounds_the_observed_values_only() -> None:
    fences = InputFences(2)
    fences.set(torch.tensor([-1.0, -math.inf]), torch.tensor([2.0, math.inf]))
    values = torch.tensor([[[-5.0, 1e6], [1.5, -1e6], [0.0, 3.0]]])
    mask = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]])
    batch = Batch(torch.zeros(1, 3), values, mask, torch.tensor([3]))
    out = fences(batch)
    assert out.values.tolist() == [[[-1.0, 1e6], [1.5, -1e6], [0.0, 3.0]]]
    assert out.mask is batch.mask and batch.values[0, 0, 0] == -5.0  # input untouched
    # without fences, every value comes back
    assert torch.equal(InputFences(2)(batch).values, values)
    with pytest.raises(ValueError, match="low <= high"):
        fences.set(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        fences.set(torch.zeros(3), torch.ones(3))


def test_model_conditions_on_clamped_values_and_scores_the_real_ones() -> None:
    torch.manual_seed(0)
    model = LatentODE(1, latent_dim=3, rec_dim=6, units=8, n_layers=1, gru_units=6,
                      encoder="gru", readout="neighbours", method="rk4", step_size=0.1,
                      gradient="backprop").double().eval()
    model.set_input_fences(torch.tensor([-2.0]), torch.tensor([2.0]))
    times = torch.linspace(0, 1, 6, dtype=torch.float64).unsqueeze(0)
    mask = torch.ones(1, 6, 1, dtype=torch.float64)

    def batch(first: float) -> Batch:
        values = torch.tensor([first, 0.1, -0.3, 0.2, 0.0, -0.1], dtype=torch.float64)
        return Batch(times, values.view(1, 6, 1), mask, torch.tensor([6]))

    at, far = batch(2.0), batch(40.0)
    with torch.no_grad():
        assert torch.equal(model.predict(at, times, torch.tensor([6])).mean,
                           model.predict(far, times, torch.tensor([6])).mean)
        # the likelihood sees 40, not 2: the real value is scored
        assert model.point_squared_error(far) - model.point_squared_error(at) > 30.0 ** 2


# ------------------------------------------------------------------ the estimator
@pytest.fixture(scope="module")
def df(make_oscillators) -> pd.DataFrame:
    return make_oscillators(n_series=10, n_points=15, span=5.0, missing=0.2)


@pytest.fixture(scope="module")
def fenced(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY, readout="neighbours", input_fences=WIDTH).fit(df)


@pytest.fixture(scope="module")
def plain(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY, readout="neighbours").fit(df)


def _fences_in_data_units(est: LatentODERegressor) -> tuple[np.ndarray, np.ndarray]:
    f = est.model_.input_fences
    return (est.scaler_.inverse_transform(f.low.double().numpy()),
            est.scaler_.inverse_transform(f.high.double().numpy()))


def test_fit_sets_the_documented_fences(df, fenced, plain) -> None:
    low, high = channel_fences(fenced.scaler_.transform(df[["x", "v"]].to_numpy(float)),
                               width=WIDTH)
    torch.testing.assert_close(fenced.model_.input_fences.low, torch.tensor(low).float())
    torch.testing.assert_close(fenced.model_.input_fences.high, torch.tensor(high).float())
    assert not plain.model_.input_fences.active
    assert plain.input_fences is None and fenced.get_params()["input_fences"] == WIDTH
    lo, hi = _fences_in_data_units(fenced)  # no training value lies beyond them
    assert ((df[["x", "v"]] >= lo) & (df[["x", "v"]] <= hi) | df[["x", "v"]].isna()).all().all()


def test_data_inside_the_fences_fit_and_predict_bit_for_bit_as_without(df, fenced,
                                                                       plain) -> None:
    for name, a in fenced.model_.state_dict().items():
        if not name.startswith("input_fences"):
            assert torch.equal(a, plain.model_.state_dict()[name]), name
    assert fenced.history_["train_loss"] == plain.history_["train_loss"]
    assert fenced.predict(df).equals(plain.predict(df))
    assert fenced.extrapolate(df, horizon=1.0, n_points=3).equals(
        plain.extrapolate(df, horizon=1.0, n_points=3))


def _with_first_value(df: pd.DataFrame, series: str, value: float) -> pd.DataFrame:
    out = df.copy()
    first = out.index[(out["id"] == series) & out["x"].notna()][0]
    out.loc[first, "x"] = value
    return out


def test_an_artefact_moves_its_series_exactly_as_a_value_at_the_fence(df, fenced,
                                                                      plain) -> None:
    _, high = _fences_in_data_units(fenced)
    at = _with_first_value(df, "s0", float(high[0]))
    far = _with_first_value(df, "s0", float(high[0]) + 1e3)
    before = far.copy()
    p_at, p_far = fenced.predict(at), fenced.predict(far)
    assert p_at.equals(p_far)
    pd.testing.assert_frame_equal(far, before)  # the user's frame is not modified
    f_at = fenced.extrapolate(at, horizon=1.0, n_points=4)
    assert f_at.equals(fenced.extrapolate(far, horizon=1.0, n_points=4))
    # without fences the artefact drags its series' predictions far away
    moved = (plain.predict(far)["x"] - plain.predict(at)["x"]).abs()[far["id"] == "s0"]
    assert moved.max() > 1.0
    # the other series are not touched by either
    others = far["id"] != "s0"
    assert p_far[others].equals(fenced.predict(df)[others])
    # the likelihood scores the real value: the artefact costs the score
    assert fenced.score(far) < fenced.score(at) - 1.0


def test_fences_travel_with_pickles_and_files(df, fenced, tmp_path) -> None:
    far = _with_first_value(df, "s1", 1e4)
    expected = fenced.predict(far)
    loaded = pickle.loads(pickle.dumps(fenced))
    assert loaded.input_fences == WIDTH and loaded.predict(far).equals(expected)
    fenced.save(tmp_path / "fenced.latentode")
    loaded = LatentODERegressor.load(tmp_path / "fenced.latentode")
    assert loaded.input_fences == WIDTH and loaded.predict(far).equals(expected)
    torch.testing.assert_close(loaded.model_.input_fences.high, fenced.model_.input_fences.high,
                               rtol=0, atol=0)


def test_files_and_pickles_from_before_load_without_fences(df, plain, tmp_path) -> None:
    from_file, from_pickle = as_saved_before(plain, "input_fences", tmp_path)
    far = _with_first_value(df, "s1", 1e4)
    for got in (from_file, from_pickle):
        assert got.input_fences is None and not got.model_.input_fences.active
        assert got.predict(far).equals(plain.predict(far))
    # a network saved before the fences existed has no such weights: none are set
    import json
    import zipfile

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "old.latentode",
                         lambda config: config["params"].pop("input_fences"))
    with zipfile.ZipFile(tmp_path / "old.latentode") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    state = st_load(members["weights.safetensors"])
    assert {"input_fences.low", "input_fences.high"} <= set(state)
    state = {k: v for k, v in state.items() if not k.startswith("input_fences")}
    with zipfile.ZipFile(tmp_path / "older.latentode", "w") as archive:
        archive.writestr("config.json", json.dumps(json.loads(members["config.json"])))
        archive.writestr("weights.safetensors", st_save(state))
    older = LatentODERegressor.load(tmp_path / "older.latentode")
    assert not older.model_.input_fences.active and older.predict(far).equals(plain.predict(far))
    pickled = plain.__getstate__()
    del pickled["input_fences"]
    for key in ("input_fences.low", "input_fences.high"):
        del pickled["model_"]["state_dict"][key]
    older = LatentODERegressor.__new__(LatentODERegressor)
    older.__setstate__(pickled)
    assert not older.model_.input_fences.active and older.predict(far).equals(plain.predict(far))


def test_a_file_with_nan_fences_is_refused(plain, tmp_path) -> None:
    import zipfile

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    plain.save(tmp_path / "m.latentode")
    with zipfile.ZipFile(tmp_path / "m.latentode") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    state = st_load(members["weights.safetensors"])
    state["input_fences.low"] = torch.full_like(state["input_fences.low"], math.nan)
    with zipfile.ZipFile(tmp_path / "bad.latentode", "w") as archive:
        archive.writestr("config.json", members["config.json"])
        archive.writestr("weights.safetensors", st_save(state))
    with pytest.raises(ValueError, match="'input_fences.low' has NaN values"):
        LatentODERegressor.load(tmp_path / "bad.latentode")


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, "tukey"])
def test_the_parameter_is_checked(df, bad) -> None:
    with pytest.raises(ValueError, match="input_fences must be"):
        LatentODERegressor(**TINY, input_fences=bad).fit(df)


def test_warm_start_refits_the_fences(df, fenced) -> None:
    from sklearn.base import clone

    est = clone(fenced).set_params(warm_start=True, max_epochs=1).fit(df)
    assert est.model_.input_fences.active
    est.set_params(input_fences=None).fit(df)
    assert not est.model_.input_fences.active


def test_the_classifier_conditions_on_fenced_values(df) -> None:
    labels = pd.Series(np.arange(10) % 2, index=[f"s{i}" for i in range(10)])
    clf = LatentODEClassifier(**TINY, input_fences=WIDTH).fit(df, labels)
    assert clf.model_.input_fences.active
    _, high = _fences_in_data_units(clf)
    at = _with_first_value(df, "s0", float(high[0]))
    far = _with_first_value(df, "s0", float(high[0]) + 1e3)
    assert clf.predict_proba(at).equals(clf.predict_proba(far))
