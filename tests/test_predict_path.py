"""The prediction path: ``latentode._predict.predict_packed`` (torch side) and the estimator's
``predict`` / ``extrapolate`` / ``sample`` / ``predict_intensity`` built on it.

The estimator's outputs are checked against what the pieces give on their own: query rows
against :func:`latentode.data.build_query`, predicted values against the network's decoded mean
(or intensity) computed series by series, directly with :meth:`LatentODE.predict` (in float64
they agree to about 4e-10: the adaptive solver's steps depend a little on the batch; a row read
from the wrong point would be off by about 0.1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY

from latentode import LatentODERegressor, ODESolveError
from latentode._predict import predict_packed
from latentode.batch import Batch
from latentode.data import build_query, pad_frame, validate_frame
from latentode.nn import LatentODE


# ---------------------------------------------------------------------------- predict_packed
def _batch(times: list[list[float]], seed: int = 0) -> Batch:
    t = torch.tensor(times, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(t.shape[0], t.shape[1], 2, generator=gen, dtype=torch.float64)
    return Batch(times=t, values=values, mask=torch.ones_like(values),
                 lengths=torch.full((t.shape[0],), t.shape[1], dtype=torch.long))


def _model(**kwargs) -> LatentODE:
    torch.manual_seed(0)
    return LatentODE(2, latent_dim=3, rec_dim=6, encoder="gru", units=12, n_layers=1,
                     gru_units=12, **kwargs).double()


def test_predict_packed_concatenates_each_series_valid_query_points():
    model = _model(poisson_process=True)
    batches = [_batch([[0.0, 0.3, 0.5], [0.1, 0.2, 0.9]], 1), _batch([[0.0, 0.4, 0.6]], 2)]
    qt = np.array([[0.2, 0.7, 0.7], [0.5, 1.5, 2.0], [0.1, 0.1, 0.1]])
    ql = np.array([2, 3, 1])
    packed = predict_packed(model, batches, qt, ql)
    assert packed.mean.shape == (1, 6, 2) and packed.mean.dtype == np.float64
    assert packed.intensity.shape == (1, 6, 2) and (packed.intensity > 0).all()
    with torch.no_grad():  # the same numbers, batch by batch, from the model itself
        first = model.predict(batches[0], torch.as_tensor(qt[:2]), torch.as_tensor(ql[:2]))
        second = model.predict(batches[1], torch.as_tensor(qt[2:, :1]), torch.as_tensor(ql[2:]))
    expected = np.concatenate([first.mean[0, 0, :2], first.mean[0, 1, :3],
                               second.mean[0, 0, :1]])
    np.testing.assert_array_equal(packed.mean[0], expected)
    np.testing.assert_array_equal(packed.obs_std, model.obs_std.detach().numpy())
    # samples: S leading, calibrated noise
    model.spread_scale.fill_(2.0)
    s = predict_packed(model, batches, qt, ql, n_samples=4,
                       generator=torch.Generator().manual_seed(0))
    assert s.mean.shape == (4, 6, 2)
    np.testing.assert_allclose(s.obs_std, 2.0 * model.obs_std.detach().numpy())


def test_predict_packed_without_series_and_without_intensity():
    model = _model()
    out = predict_packed(model, [], np.zeros((0, 1)), np.zeros(0, dtype=np.int64), n_samples=3)
    assert out.mean.shape == (3, 0, 2) and out.intensity is None
    assert out.obs_std.shape == (2,)


def test_predict_packed_error_counts_series_across_batches_and_restores_max_steps():
    model = _model(method="rk4", step_size=1e-3)
    model.max_steps = 10_000
    batches = [_batch([[0.0, 0.01]]), _batch([[0.0, 0.01], [0.0, 0.02]])]
    qt = np.array([[0.02], [0.03], [5.0]])  # the third series needs ~5,000 steps
    with pytest.raises(ODESolveError) as info:
        predict_packed(model, batches, qt, np.ones(3, dtype=np.int64), max_steps=50)
    assert info.value.series == 2 and info.value.reason == "max_steps"
    assert model.max_steps == 10_000
    out = predict_packed(model, batches, qt, np.ones(3, dtype=np.int64))  # its own budget
    assert np.isfinite(out.mean).all()


# ---------------------------------------------------------------------------- estimator
@pytest.fixture(scope="module")
def frames(make_oscillators) -> dict[str, pd.DataFrame]:
    df = make_oscillators(6, 12, seed=4)
    dt = df.copy()
    dt["t"] = pd.Timestamp("2024-05-01", tz="UTC") + pd.to_timedelta(dt["t"], unit="h")
    return {"float": df, "datetime": dt}


@pytest.fixture(scope="module")
def fitted(frames) -> dict[str, LatentODERegressor]:
    """Tiny float64 models with a Poisson process, batch_size 4 (two prediction batches)."""
    out = {}
    for kind, df in frames.items():
        # the values checked are the decoded posterior-mean path
        est = LatentODERegressor(**{**TINY, "max_epochs": 1, "batch_size": 4,
                                    "poisson_process": True,
                                    "point_prediction": "posterior_mean"}).fit(df)
        est.model_.double()
        out[kind] = est
    return out


def _direct(est: LatentODERegressor, df: pd.DataFrame, query: pd.DataFrame,
            what: str = "mean") -> np.ndarray:
    """The network's decoded mean (or intensity) at the query rows, one series at a time."""
    vf = validate_frame(df, time_col="t", id_col="id", expected_targets=est.target_cols_,
                        empty_series="keep")
    padded = pad_frame(vf, est.time_encoder_, est.scaler_, dtype=np.float64)
    out = np.full((len(query), len(est.target_cols_)), np.nan)
    model_times = est.time_encoder_.transform(query["t"])
    for b, sid in enumerate(padded.series_ids):
        rows = np.flatnonzero(query["id"].to_numpy() == sid)
        n = int(padded.lengths[b])
        if not len(rows) or n == 0:  # not queried, or nothing to condition on: NaN
            continue
        cond = Batch(*(torch.as_tensor(a[b:b + 1, :n]) for a in
                       (padded.times, padded.values, padded.mask.astype(np.float64))),
                     lengths=torch.tensor([n]))
        uniq, pos = np.unique(model_times[rows], return_inverse=True)
        with torch.no_grad():
            pred = est.model_.predict(cond, torch.as_tensor(uniq)[None],
                                      torch.tensor([len(uniq)]))
        if what == "mean":
            out[rows] = est.scaler_.inverse_transform(pred.mean[0, 0].numpy())[pos]
        else:
            out[rows] = pred.intensity[0, 0].numpy()[pos] / est.time_encoder_.scale_
    return out


@pytest.mark.parametrize("kind", ["float", "datetime"])
def test_extrapolate_rows_are_the_grid_and_values_the_decoded_mean(frames, fitted, kind):
    df, est = frames[kind], fitted[kind]
    horizon = 1.5 if kind == "float" else pd.Timedelta(minutes=90)
    fc = est.extrapolate(df, horizon=horizon, n_points=3)
    vf = validate_frame(df, time_col="t", id_col="id", expected_targets=est.target_cols_)
    query = build_query(df, vf, est.time_encoder_, grid=(horizon, 3))
    pd.testing.assert_frame_equal(fc[["id", "t"]], query.frame)
    # three times after each series' last observation, series in order of appearance
    last = df.dropna(subset=["x", "v"], how="all").groupby("id", sort=False)["t"].max()
    assert fc["id"].unique().tolist() == df["id"].unique().tolist()
    step = fc.groupby("id", sort=False)["t"].apply(lambda t: t.diff().dropna().unique())
    assert all(len(s) == 1 for s in step)
    np.testing.assert_array_equal(fc.groupby("id", sort=False)["t"].min().to_numpy(),
                                  (last + (horizon / 3)).loc[fc["id"].unique()].to_numpy())
    np.testing.assert_allclose(fc[["x", "v"]].to_numpy(), _direct(est, df, fc),
                               rtol=1e-7, atol=1e-7)


def test_predict_rows_and_values_with_unconditioned_series(frames, fitted):
    df, est = frames["float"], fitted["float"]
    extra = pd.DataFrame({"id": ["none", "none"], "t": [1.0, 2.0], "x": np.nan, "v": np.nan})
    full = pd.concat([df, extra]).sample(frac=1.0, random_state=0)
    full.index = np.arange(len(full))[::-1] % 9  # repeated labels, reversed
    with pytest.warns(UserWarning, match="'none'"):
        pred = est.predict(full)
    pd.testing.assert_frame_equal(pred[["id", "t"]], full[["id", "t"]])
    gone = (full["id"] == "none").to_numpy()
    assert np.isnan(pred.loc[gone, ["x", "v"]].to_numpy()).all()
    np.testing.assert_allclose(pred[["x", "v"]].to_numpy(), _direct(est, full, full),
                               rtol=1e-7, atol=1e-7)  # NaN where _direct has nothing
    with pytest.warns(UserWarning, match="'none'"):
        intensity = est.predict_intensity(full, times=full[["id", "t"]])
    pd.testing.assert_index_equal(intensity.index, full.index)
    np.testing.assert_allclose(intensity[["x", "v"]].to_numpy(),
                               _direct(est, full, full, "intensity"), rtol=1e-7, atol=1e-9)


def test_sample_and_intensity_share_the_query_of_extrapolate(frames, fitted):
    df, est = frames["datetime"], fitted["datetime"]
    times = pd.date_range("2024-05-01 07:00", periods=2, freq="30min", tz="UTC")
    fc = est.extrapolate(df, times=times)
    draws = est.sample(df, 3, times=times, random_state=5)
    n = len(fc)
    assert draws["sample"].tolist() == np.repeat(np.arange(3), n).tolist()
    for s in range(3):
        part = draws.iloc[s * n:(s + 1) * n].reset_index(drop=True)
        pd.testing.assert_frame_equal(part[["id", "t"]], fc[["id", "t"]])
    pd.testing.assert_frame_equal(est.sample(df, 3, times=times, random_state=5), draws)
    rate = est.predict_intensity(df, times=times)
    pd.testing.assert_frame_equal(rate[["id", "t"]], fc[["id", "t"]])
    np.testing.assert_allclose(rate[["x", "v"]].to_numpy(), _direct(est, df, fc, "intensity"),
                               rtol=1e-7, atol=1e-9)


def test_solve_error_in_a_later_batch_names_its_series():
    t = np.linspace(0.0, 1.0, 5)
    df = pd.DataFrame({"id": np.repeat(["a", "b", "c"], 5),
                       "t": np.r_[t * 1e-3, t, t], "x": np.sin(np.r_[t, t, t])})
    # batches of one series; only "b" and "c" (a span of ~1 in model time) exhaust the budget
    # (the calibration on the validation series alone: "training" would solve "b" in fit)
    est = LatentODERegressor(**{**TINY, "solver": "rk4", "step_size": 1e-3, "max_epochs": 0,
                                "batch_size": 1, "max_steps": 20,
                                "calibration_structure": "validation"}).fit(df)
    assert np.isfinite(est.predict(df[df["id"] == "a"])["x"]).all()
    with pytest.raises(ODESolveError) as info:
        est.predict(df)
    assert "series 'b' (column 'id')" in str(info.value) and "max_steps=20 " in str(info.value)
    assert info.value.series == 0  # its index in its batch, as the solver counts
    assert est.model_.max_steps == 20
