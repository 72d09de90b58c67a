"""Behaviour of :class:`latentode.LatentODERegressor`: fit / predict / extrapolate / score,
repeatability, warm start, datetime times and bad input.

All fits here use tiny networks and a few epochs; accuracy runs are marked ``slow``.
"""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY
from sklearn.exceptions import NotFittedError

from latentode import LatentODERegressor


@pytest.fixture(scope="module")
def df(oscillators) -> pd.DataFrame:
    """12 damped oscillators (ids ``s0``..``s11``, channels ``x``, ``v``) on ``[0, 6]``."""
    return oscillators


@pytest.fixture(scope="module")
def fitted(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(df)


# ---------------------------------------------------------------------------- basic contract
def test_fit_sets_attributes(fitted, df):
    assert fitted.target_cols_ == ["x", "v"]
    assert fitted.time_col_ == "t" and fitted.id_col_ == "id"
    assert list(fitted.feature_names_in_) == ["id", "t", "x", "v"]
    assert fitted.n_features_in_ == 4
    assert fitted.device_ == torch.device("cpu")
    assert len(fitted.history_) == 2
    assert all(np.isfinite(fitted.history_["train_loss"]))
    assert fitted.history_["val_loss"][0] is not None  # 12 series -> 1 validation series


def test_not_fitted_errors(df):
    est = LatentODERegressor(**TINY)
    for call in (lambda: est.predict(df), lambda: est.extrapolate(df), lambda: est.score(df)):
        with pytest.raises(NotFittedError):
            call()


def test_predict_aligned_with_shuffled_rows(fitted, df):
    shuffled = df.sample(frac=1.0, random_state=1)
    shuffled.index = np.random.default_rng(0).permutation(len(df)) * 3 + 7  # odd labels
    pred = fitted.predict(shuffled)
    assert len(pred) == len(shuffled)
    assert pred.index.equals(shuffled.index)
    assert list(pred.columns) == ["id", "t", "x", "v"]
    pd.testing.assert_series_equal(pred["id"], shuffled["id"])
    pd.testing.assert_series_equal(pred["t"], shuffled["t"])
    assert np.isfinite(pred[["x", "v"]].to_numpy()).all()
    # row order does not change the prediction of a row
    ref = fitted.predict(df)
    back = fitted.predict(df.sample(frac=1.0, random_state=4)).sort_index()
    pd.testing.assert_frame_equal(back, ref, check_exact=False, rtol=1e-5, atol=1e-6)


def test_caller_frame_unchanged(df):
    original = df.sample(frac=1.0, random_state=2)
    copy = original.copy(deep=True)
    est = LatentODERegressor(**TINY).fit(original)
    est.predict(original)
    est.extrapolate(original, horizon=1.0, n_points=3)
    est.score(original)
    pd.testing.assert_frame_equal(original, copy)


def test_imputes_rows_with_all_targets_missing(fitted, df):
    holes = df.copy()
    holes.loc[holes.index[[3, 25, 40]], ["x", "v"]] = np.nan
    pred = fitted.predict(holes)
    assert len(pred) == len(holes)
    assert np.isfinite(pred.loc[holes.index[[3, 25, 40]], ["x", "v"]].to_numpy()).all()


def test_unseen_ids_and_extra_columns(fitted, df, make_oscillators):
    new = make_oscillators(n_series=3, seed=5)
    new["id"] = "new-" + new["id"]
    new["comment"] = "ignored"
    pred = fitted.predict(new)
    assert list(pred.columns) == ["id", "t", "x", "v"]
    assert len(pred) == len(new)


def test_missing_target_column_raises(fitted, df):
    with pytest.raises(ValueError, match="'v'"):
        fitted.predict(df.drop(columns="v"))


def test_single_series_without_id(df):
    one = df[df["id"] == "s0"].drop(columns="id")
    est = LatentODERegressor(**{**TINY, "validation_fraction": 0.0}).fit(one, id_col=None)
    assert est.id_col_ is None and est.target_cols_ == ["x", "v"]
    pred = est.predict(one)
    assert list(pred.columns) == ["t", "x", "v"] and pred.index.equals(one.index)
    fc = est.extrapolate(one, horizon=1.0, n_points=4)
    assert list(fc.columns) == ["t", "x", "v"] and len(fc) == 4


def test_target_cols_subset(df):
    est = LatentODERegressor(**TINY).fit(df, target_cols=["x"])
    assert est.target_cols_ == ["x"]
    pred = est.predict(df)
    assert list(pred.columns) == ["id", "t", "x"]


# ---------------------------------------------------------------------------- extrapolate
def test_extrapolate_after_last_observation(fitted, df):
    fc = fitted.extrapolate(df, horizon=2.0, n_points=5)
    assert list(fc.columns) == ["id", "t", "x", "v"]
    assert len(fc) == 12 * 5
    last = df.dropna(subset=["x", "v"], how="all").groupby("id")["t"].max()
    for sid, grp in fc.groupby("id"):
        np.testing.assert_allclose(grp["t"].to_numpy(), last[sid] + np.linspace(0.4, 2.0, 5))
    assert np.isfinite(fc[["x", "v"]].to_numpy()).all()


def test_extrapolate_explicit_times(fitted, df):
    fc = fitted.extrapolate(df, times=np.array([6.5, 7.0]))
    assert len(fc) == 12 * 2
    assert sorted(fc["t"].unique()) == [6.5, 7.0]
    query = pd.DataFrame({"id": ["s3", "s1", "s3"], "t": [8.0, 7.0, 7.5]}, index=[10, 11, 12])
    fc2 = fitted.extrapolate(df, times=query)
    assert fc2.index.equals(query.index)
    pd.testing.assert_series_equal(fc2["id"], query["id"])
    pd.testing.assert_series_equal(fc2["t"], query["t"])
    # same series and time -> same forecast whichever way it was asked for
    a = fc[(fc["id"] == "s1") & (fc["t"] == 7.0)][["x", "v"]].to_numpy()
    b = fc2.loc[[11], ["x", "v"]].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fixed_step_solver_default_step_is_accurate(df):
    """rk4 with the default step matches a tight dopri5 solve at a far forecast time.

    The dynamics weights are scaled up so the untrained vector field bends the trajectory; one
    rk4 step per requested interval (``step_size`` huge) is visibly wrong on the same model.
    """
    def forecast(**params) -> np.ndarray:
        # point forecasts: no interval calibration
        est = LatentODERegressor(**{**TINY, "max_epochs": 0, "calibrate": False, **params}).fit(df)
        with torch.no_grad():
            for p in est.model_.dynamics.parameters():
                p.mul_(3.0)
        return est.extrapolate(df, horizon=10.0, n_points=1)[["x", "v"]].to_numpy()

    ref = forecast(solver="dopri5", rtol=1e-8, atol=1e-9)
    default_err = np.abs(forecast(solver="rk4") - ref).max()
    one_step_err = np.abs(forecast(solver="rk4", step_size=1e6) - ref).max()
    assert default_err < 1e-4, default_err
    assert one_step_err > 100 * default_err, (one_step_err, default_err)


def test_extrapolate_unknown_query_id_raises(fitted, df):
    query = pd.DataFrame({"id": ["nope"], "t": [7.0]})
    with pytest.raises(ValueError, match="nope"):
        fitted.extrapolate(df, times=query)


def test_extrapolate_bad_horizon(fitted, df):
    with pytest.raises(ValueError, match="horizon"):
        fitted.extrapolate(df, horizon=pd.Timedelta(hours=1))  # numeric time column
    with pytest.raises(ValueError, match="horizon"):
        fitted.extrapolate(df, horizon=-1.0)
    with pytest.raises(ValueError, match="n_points"):
        fitted.extrapolate(df, n_points=0)
    with pytest.raises(ValueError, match="times"):
        fitted.extrapolate(df, times=pd.to_datetime(["2024-01-01"]))


def test_predict_samples_hook(fitted, df):
    """Internal hook for predictive uncertainty: trajectory samples + observation noise."""
    a = fitted._predict_samples(df, n_samples=4, use_mean=False)
    b = fitted._predict_samples(df, n_samples=4, use_mean=False)
    assert a.mean.shape == (4, len(df), 2)
    assert a.obs_std.shape == (2,) and (a.obs_std > 0).all()
    np.testing.assert_array_equal(a.mean, b.mean)  # random_state fixes the sampling noise
    assert not np.allclose(a.mean[0], a.mean[1])  # samples differ from each other
    assert a.query.index.equals(df.index)


# ---------------------------------------------------------------------------- datetimes
def test_datetime_time_column_round_trip(df):
    dt = df.copy()
    dt["t"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(dt["t"], unit="h")
    est = LatentODERegressor(**TINY).fit(dt)
    pred = est.predict(dt)
    pd.testing.assert_series_equal(pred["t"], dt["t"])
    fc = est.extrapolate(dt, horizon=pd.Timedelta(hours=2), n_points=4)
    assert pd.api.types.is_datetime64_any_dtype(fc["t"])
    last = dt.dropna(subset=["x", "v"], how="all").groupby("id")["t"].max()
    first = fc.groupby("id")["t"].min()
    assert ((first - last[first.index]) == pd.Timedelta(minutes=30)).all()
    # a float horizon is read in the encoder's stored unit
    unit_td = pd.to_timedelta(1, unit=est.time_encoder_.unit)
    fc_float = est.extrapolate(dt, horizon=pd.Timedelta(hours=2) / unit_td, n_points=4)
    pd.testing.assert_series_equal(fc_float["t"], fc["t"])
    np.testing.assert_allclose(fc_float[["x", "v"]], fc[["x", "v"]], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- learning
def test_short_fit_improves_score(df):
    untrained = LatentODERegressor(**{**TINY, "max_epochs": 0}).fit(df)
    trained = LatentODERegressor(**{**TINY, "max_epochs": 25, "lr": 2e-2, "kl_warmup": 5,
                                    "early_stopping": False}).fit(df)
    s0, s1 = untrained.score(df), trained.score(df)
    assert np.isfinite(s0) and np.isfinite(s1)
    assert s1 > s0 + 2.0, (s0, s1)  # measured: -11.20 -> -3.96


def test_same_random_state_identical(df):
    a = LatentODERegressor(**TINY).fit(df)
    b = LatentODERegressor(**TINY).fit(df)
    pd.testing.assert_frame_equal(a.predict(df), b.predict(df), check_exact=True)
    assert a.score(df) == b.score(df)
    assert a.history_["train_loss"] == b.history_["train_loss"]
    c = LatentODERegressor(**{**TINY, "random_state": 1}).fit(df)
    assert not np.allclose(a.predict(df)[["x", "v"]], c.predict(df)[["x", "v"]])


def test_random_state_does_not_touch_global_rng(df):
    # the legacy global numpy generator is exactly what must stay untouched
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected_t, expected_np = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    LatentODERegressor(**TINY).fit(df).predict(df)
    np.testing.assert_array_equal(torch.rand(3), expected_t)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)  # noqa: NPY002


def test_warm_start_continues_training(df):
    est = LatentODERegressor(**{**TINY, "warm_start": True}).fit(df)
    before = {k: v.clone() for k, v in est.model_.state_dict().items()}
    encoder = est.time_encoder_
    est.fit(df)
    assert len(est.history_) == 4
    assert est.history_["epoch"] == [0, 1, 2, 3]
    assert est.time_encoder_ is encoder
    changed = any(not torch.equal(before[k], v) for k, v in est.model_.state_dict().items())
    assert changed


def test_failed_warm_start_keeps_previous_fit(df):
    est = LatentODERegressor(**{**TINY, "warm_start": True}).fit(df)
    before = est.predict(df)
    model = est.model_
    bad = df.copy()
    bad.loc[bad.index[0], "t"] = np.nan
    with pytest.raises(ValueError):
        est.fit(bad)
    assert est.model_ is model
    pd.testing.assert_frame_equal(est.predict(df), before)
    with pytest.raises(ValueError, match="target"):
        est.fit(df, target_cols=["x"])


def test_warm_start_refuses_a_changed_network_parameter(df):
    """A warm start continues the fitted network: a parameter that shapes it may not change
    (it was silently kept), one the fitted network does not use may."""
    # parameters, solver settings and point predictions: no interval calibration
    est = LatentODERegressor(**{**TINY, "max_epochs": 1, "calibrate": False}).fit(df)
    model = est.model_
    est.set_params(warm_start=True, latent_dim=5)
    with pytest.raises(ValueError, match=re.escape(
            "warm_start=True continues the fitted network, which was built with latent_dim=3; "
            "got latent_dim=5. Set it back, or use warm_start=False to fit a new network.")):
        est.fit(df)
    est.set_params(latent_dim=3, obs_std=0.05)
    with pytest.raises(ValueError,
                       match=re.escape("built with obs_std='learned'; got obs_std=0.05")):
        est.fit(df)
    assert est.model_ is model and len(est.history_) == 1  # the fit is left as it was
    # mtan_ref_points and obs_df are not used by a GRU encoder and a Gaussian likelihood
    est.set_params(obs_std="learned", mtan_ref_points=5, obs_df=3.0).fit(df)
    assert len(est.history_) == 2 and est.model_.hparams["latent_dim"] == 3


def test_warm_start_refuses_a_changed_readout_reach(df, tmp_path):
    """``readout_reach`` starts the neighbour readout's learned reach: a warm start keeps the
    fitted one, so a changed value is refused like the other network parameters (it was
    silently the fitted network's). Networks saved before it was recorded still warm-start."""
    import json
    import zipfile

    est = LatentODERegressor(**{**TINY, "max_epochs": 1}, readout="neighbours",
                             readout_reach="spacing", calibrate=False).fit(df)  # no intervals
    assert est.model_.hparams["readout_reach"] == "spacing"
    model = est.model_
    est.set_params(warm_start=True, readout_reach="window")
    with pytest.raises(ValueError, match=re.escape(
            "warm_start=True continues the fitted network, which was built with "
            "readout_reach='spacing'; got readout_reach='window'. Set it back, or use "
            "warm_start=False to fit a new network.")):
        est.fit(df)
    assert est.model_ is model and len(est.history_) == 1
    est.set_params(readout_reach="spacing").fit(df)  # unchanged: continues
    assert len(est.history_) == 2
    # saved / pickled with the record, the check holds after loading
    est.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert loaded.model_.hparams["readout_reach"] == "spacing"
    with pytest.raises(ValueError, match="readout_reach='spacing'; got readout_reach='window'"):
        pickle.loads(pickle.dumps(loaded)).set_params(readout_reach="window").fit(df)
    # a file written before the record existed: loads, and warm-starts with either value
    with zipfile.ZipFile(tmp_path / "m.latentode") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(members["config.json"])
    del config["model_hparams"]["readout_reach"]
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "old.latentode", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    old = LatentODERegressor.load(tmp_path / "old.latentode")
    assert old.model_.hparams["readout_reach"] is None
    pd.testing.assert_frame_equal(old.predict(df), loaded.predict(df), check_exact=True)
    old.set_params(warm_start=True, readout_reach="window").fit(df)
    assert len(old.history_) == 3
    # a readout-less network does not use it: it may change
    plain = LatentODERegressor(**{**TINY, "max_epochs": 1}, readout="latent").fit(df)
    plain.set_params(warm_start=True, readout_reach="spacing").fit(df)
    assert len(plain.history_) == 2


def test_warm_start_applies_the_solver_settings(df, tmp_path):
    """The solver's settings of a warm start are this fit's (they were the first fit's)."""
    # parameters, solver settings and point predictions: no interval calibration
    est = LatentODERegressor(**{**TINY, "max_epochs": 1, "calibrate": False}).fit(df)
    assert est.model_.method == "dopri5"
    est.set_params(warm_start=True, solver="rk4", step_size=0.25, rtol=1e-2).fit(df)
    assert (est.model_.method, est.model_.step_size, est.model_.rtol) == ("rk4", 0.25, 1e-2)
    est.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert loaded.model_.method == "rk4" and loaded.model_.step_size == 0.25
    pd.testing.assert_frame_equal(loaded.predict(df), est.predict(df), check_exact=True)


def test_failed_first_fit_leaves_unfitted(df):
    est = LatentODERegressor(**TINY)
    with pytest.raises(ValueError):
        est.fit(df.drop(columns="t"))
    with pytest.raises(NotFittedError):
        est.predict(df)


def test_verbose_zero_is_silent(df, capsys):
    LatentODERegressor(**TINY).fit(df)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_shown_during_the_first_epoch_and_counted_from_1(df, capsys, monkeypatch):
    """The bar is drawn before any batch and its batch text moves within an epoch."""
    from latentode.nn import LatentODE

    seen: list[str] = []
    printed: list[str] = []
    loss = LatentODE.loss

    def spy(self, *args, **kwargs):  # what the user's terminal holds when each batch starts
        captured = capsys.readouterr()
        seen.append(captured.err)
        printed.append(captured.out)
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(LatentODE, "loss", spy)
    import latentode.training.loop as loop

    monkeypatch.setattr(loop, "_BATCH_TEXT_INTERVAL", 0.0)  # redraw the batch text every batch
    est = LatentODERegressor(**{**TINY, "verbose": 2, "max_epochs": 2}).fit(df)
    rest = capsys.readouterr()
    err = "\n".join(seen + printed + [rest.err, rest.out])  # tqdm.write prints on stdout
    assert "latentode fit" in seen[0] and "0/2" in seen[0]  # the bar before any batch ran
    assert "(batch 1)" in seen[0] and "(batch 2)" in seen[1]  # updated within the epoch
    assert "0/2" in seen[1]
    lines = [ln.strip() for ln in err.replace("\r", "\n").splitlines()]
    assert [ln.split(":")[0] for ln in lines if ln.startswith("epoch ")] == ["epoch 1/2",
                                                                            "epoch 2/2"]
    assert est.history_["epoch"] == [0, 1]  # records stay 0-based indices


# ---------------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize(
    "param, value",
    [("latent_dim", 0), ("rec_dim", 2.5), ("encoder", "lstm"), ("gradient", "none"),
     ("solver", "rk45"), ("rtol", -1.0), ("step_size", 0.0), ("step_size", "0.1"),
     ("n_traj_samples", 0), ("max_epochs", -1),
     ("batch_size", 0), ("lr", 0.0), ("kl_warmup", -2), ("obs_dropout", 1.0),
     ("obs_weighting", "series"), ("lr_decay", 0.0), ("lr_decay", 1.5),
     ("forecast_split", 1.0), ("forecast_split", 0),
     ("validation_fraction", 1.0),
     ("early_stopping", "yes"), ("patience", 0), ("obs_std", "fixed"), ("device", "tpu"),
     ("random_state", "seed"), ("verbose", -1), ("warm_start", None)],
)
def test_invalid_params_raise_in_fit(df, param, value):
    est = LatentODERegressor(**{**TINY, param: value})  # __init__ never validates
    assert est.get_params()[param] == value or value is None
    with pytest.raises(ValueError, match=param if param != "device" else "device"):
        est.fit(df)


# ---------------------------------------------------------------------------- bad input
def test_missing_columns(df):
    est = LatentODERegressor(**TINY)
    with pytest.raises(ValueError, match="'t'"):
        est.fit(df.drop(columns="t"))
    with pytest.raises(ValueError, match="'id'"):
        est.fit(df.drop(columns="id"))
    with pytest.raises(ValueError, match="'nope'"):
        est.fit(df, target_cols=["x", "nope"])


def test_non_numeric_target(df):
    bad = df.copy()
    bad["label"] = "a"
    with pytest.raises(ValueError, match="'label'"):
        LatentODERegressor(**TINY).fit(bad, target_cols=["x", "label"])
    # inferred targets: only numeric columns are used, and the text column is named
    with pytest.warns(UserWarning, match=r"Left out \(not numeric\): 'label'"):
        est = LatentODERegressor(**TINY).fit(bad)
    assert est.target_cols_ == ["x", "v"]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_time(df, value):
    bad = df.copy()
    bad.loc[bad.index[5], "t"] = value
    with pytest.raises(ValueError, match="'t'") as info:
        LatentODERegressor(**TINY).fit(bad)
    assert "s0" in str(info.value) or "5" in str(info.value)  # names the series or row


def test_unsorted_rows_are_sorted(df, fitted):
    shuffled = df.sample(frac=1.0, random_state=3)
    est = LatentODERegressor(**TINY).fit(shuffled)
    pd.testing.assert_frame_equal(est.predict(df), fitted.predict(df), check_exact=False,
                                  rtol=1e-5, atol=1e-6)


def test_duplicate_rows_merged_with_warning(df, fitted):
    dup = pd.concat([df, df.iloc[[0, 1, 2]]])
    with pytest.warns(UserWarning, match="3"):
        est = LatentODERegressor(**TINY).fit(dup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = est.predict(dup)
    assert len(pred) == len(dup) and pred.index.equals(dup.index)


def test_series_without_observed_values_skipped_by_fit(df, fitted):
    bad = df.copy()
    bad.loc[bad["id"].isin(["s4", "s7"]), ["x", "v"]] = np.nan
    with pytest.warns(UserWarning) as record:
        est = LatentODERegressor(**TINY).fit(bad)
    assert len(record) == 1
    assert re.fullmatch(r"2 series have no observed value of the target columns 'x', 'v' and "
                        r"were left out of the fit: 's4', 's7' \(column 'id'\); predict and "
                        r"extrapolate return NaN for such series\.", str(record[0].message))
    assert record[0].filename == __file__
    # the same model as a fit on the frame without those series
    without = bad[~bad["id"].isin(["s4", "s7"])]
    ref = LatentODERegressor(**TINY).fit(without)
    assert est.history_["train_loss"] == ref.history_["train_loss"]
    pd.testing.assert_frame_equal(est.predict(without), ref.predict(without))
    # every series empty: an error before training
    with pytest.raises(ValueError, match=r"'x', 'v' have no observed value"):
        LatentODERegressor(**TINY).fit(bad.assign(x=np.nan, v=np.nan))


def test_series_without_observed_values_predicted_as_nan(df, fitted):
    bad = df.copy()
    empty = bad["id"] == "s4"
    bad.loc[empty, ["x", "v"]] = np.nan
    with pytest.warns(UserWarning, match=r"^1 series has no observed value to condition on: "
                                         r"'s4' \(column 'id'\); its predictions are NaN\.$"):
        pred = fitted.predict(bad, quantiles=(0.1, 0.9), n_samples=5)
    assert pred.index.equals(bad.index)
    assert pred.loc[empty].drop(columns=["id", "t"]).isna().all().all()
    assert np.isfinite(pred.loc[~empty, ["x", "v", "x_q0.1", "v_q0.9"]].to_numpy()).all()
    # the other series are predicted exactly as without the empty one
    others = fitted.predict(bad[~empty], quantiles=(0.1, 0.9), n_samples=5)
    pd.testing.assert_frame_equal(pred.loc[~empty, ["id", "t", "x", "v"]],
                                  others[["id", "t", "x", "v"]], rtol=1e-5, atol=1e-6)

    with pytest.warns(UserWarning, match="'s4'") as record:
        fc = fitted.extrapolate(bad, horizon=1.0, n_points=4)
    assert len(record) == 1 and record[0].filename == __file__
    rows = fc[fc["id"] == "s4"]
    assert rows[["x", "v"]].isna().all().all()
    last_row_time = bad.loc[empty, "t"].max()  # no observation: the grid starts at its last row
    np.testing.assert_allclose(rows["t"], last_row_time + np.array([0.25, 0.5, 0.75, 1.0]))
    assert np.isfinite(fc.loc[fc["id"] != "s4", ["x", "v"]].to_numpy()).all()
    with pytest.warns(UserWarning, match="'s4'"):
        draws = fitted.sample(bad, n_samples=2)
    assert draws.loc[draws["id"] == "s4", ["x", "v"]].isna().all().all()
    # score: the empty series holds no value to score, so it changes nothing
    assert fitted.score(bad) == pytest.approx(fitted.score(bad[~empty]), rel=1e-6)
    with pytest.raises(ValueError, match="no observed target value to score"):
        fitted.score(bad[empty])
    with pytest.warns(UserWarning, match="'s4'"):
        assert fitted.predict(bad[empty]).drop(columns=["id", "t"]).isna().all().all()


def test_empty_frame(df):
    with pytest.raises(ValueError, match=re.compile("empty", re.I)):
        LatentODERegressor(**TINY).fit(df.iloc[:0])


@pytest.mark.parametrize("encoder, forecast_split", [("gru", None), ("odernn", None),
                                                     ("gru", 0.5)])
def test_one_point_series_trains(df, encoder, forecast_split):
    lonely = pd.DataFrame({"id": ["lonely", "alone", "alone"], "t": [1.0, 0.5, 2.0],
                           "x": [0.3, np.nan, 0.8], "v": [0.1, np.nan, np.nan]})
    data = pd.concat([df, lonely], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        est = LatentODERegressor(**{**TINY, "encoder": encoder,
                                    "forecast_split": forecast_split}).fit(data)
        pred = est.predict(lonely)
        fc = est.extrapolate(lonely, horizon=1.0, n_points=2)
    assert all(np.isfinite(est.history_["train_loss"]))
    assert np.isfinite(pred[["x", "v"]].to_numpy()).all()
    assert np.isfinite(fc[["x", "v"]].to_numpy()).all()
    np.testing.assert_allclose(fc.loc[fc["id"] == "alone", "t"], [2.5, 3.0])
    # series made of single observations only: reconstruction trains, forecasting cannot
    singles = df.groupby("id").head(1).dropna(subset=["x"])
    est = LatentODERegressor(**TINY).fit(singles)
    assert all(np.isfinite(est.history_["train_loss"]))
    with pytest.raises(ValueError, match="forecast_split needs series with at least two"):
        LatentODERegressor(**{**TINY, "forecast_split": 0.5}).fit(singles)


def test_channel_without_observed_value_raises(df):
    with pytest.raises(ValueError, match=r"Target column 'v' has no observed value \(all NaN\)"):
        LatentODERegressor(**TINY).fit(df.assign(v=np.nan))
    with pytest.raises(ValueError, match=r"'w'"):
        LatentODERegressor(**TINY).fit(df.assign(w=np.nan), target_cols=["x", "w"])


def test_inferred_targets_warning_at_fit(df):
    extra = df.assign(row=np.arange(len(df)), flag=df["t"] > 3.0,
                      hr=df["x"].map(lambda v: "" if np.isnan(v) else f"{v:.3f}"))
    extra["hr"] = extra["hr"].replace("", None)
    with pytest.warns(UserWarning) as record:
        est = LatentODERegressor(**TINY).fit(extra)
    assert len(record) == 1
    message = str(record[0].message)
    assert est.target_cols_ == ["x", "v", "row", "flag"]
    assert "'hr' (" in message and "numbers stored as strings" in message
    assert "'row' (int64: increasing by one on every row" in message
    assert "'flag' (bool" in message
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LatentODERegressor(**TINY).fit(extra, target_cols=["x", "v"])
        est.predict(extra)  # predict reads the fitted targets: no warning either


@pytest.mark.parametrize("value", [1e300, -1e200])
def test_values_too_large_raise_before_training(df, value, monkeypatch):
    import latentode.estimator as estimator_module

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(estimator_module, "fit_model", no_training)
    bad = df.copy()
    bad.loc[7, "v"] = value
    with pytest.raises(ValueError, match=r"Target column 'v' has values too large to "
                                         r"standardise .* at row 7\."):
        LatentODERegressor(**TINY).fit(bad)


def test_value_overflowing_float32_at_predict(fitted, df):
    bad = df.copy()
    bad.loc[11, "x"] = 1e40  # finite, but ~1e40 standard deviations from the training mean
    with pytest.raises(ValueError, match=r"Column 'x' has a value at row 11 .* overflows "
                                         r"float32"):
        fitted.predict(bad)


def test_missing_id_column_suggests_id_col_none(df):
    single = df[df["id"] == "s0"].drop(columns="id")
    with pytest.raises(ValueError, match=r"Unknown id column 'id'.*pass id_col=None"):
        LatentODERegressor(**TINY).fit(single, time_col="t")
    est = LatentODERegressor(**TINY).fit(single, time_col="t", id_col=None)
    assert est.predict(single).shape == (len(single), 3)


# ---------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_device_uses_cuda(df):
    est = LatentODERegressor(**{**TINY, "device": "auto"}).fit(df)
    assert est.device_.type == "cuda"
    assert next(est.model_.parameters()).is_cuda
    pred = est.predict(df)
    assert np.isfinite(pred[["x", "v"]].to_numpy()).all()


# ---------------------------------------------------------------------------- obs_weighting
def test_channel_weighting_reconstructs_a_channel_observed_once_per_series():
    """A static value observed once per series (next to 24 dense values) is only learnt when
    every channel of a series weighs the same (``obs_weighting="channel"``)."""
    rng = np.random.default_rng(0)
    n, m = 80, 25
    t = np.tile(np.linspace(0.0, 1.0, m), n)
    phase = np.repeat(rng.uniform(0.0, 2.0 * np.pi, n), m)
    static = np.full(n * m, np.nan)
    static[::m] = rng.normal(size=n)
    df = pd.DataFrame({"id": np.repeat(np.arange(n), m), "t": t, "static": static,
                       "dense": np.sin(2.0 * np.pi * t + phase) + 0.05 * rng.normal(size=n * m)})
    seen = df["static"].notna()
    errors = {}
    for weighting in ("value", "channel"):  # point predictions: no interval calibration
        est = LatentODERegressor(**{**TINY, "max_epochs": 30, "lr": 2e-2,
                                    "obs_weighting": weighting, "calibrate": False}).fit(df)
        pred = est.predict(df)
        errors[weighting] = float(((pred["static"] - df["static"])[seen] ** 2).mean())
    # measured: value 0.129, channel 0.013 (the static values have variance about 1)
    assert errors["channel"] < min(0.05, errors["value"] / 3), errors


def test_forecast_split_reaches_training_and_calibration(df, monkeypatch):
    import latentode.estimator as est_mod

    seen = {}
    for name in ("fit_model", "calibrate_spread"):
        real = getattr(est_mod, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen[_name] = kwargs.get("forecast_split")
            return _real(*args, **kwargs)

        monkeypatch.setattr(est_mod, name, spy)
    est = LatentODERegressor(**{**TINY, "forecast_split": 0.5, "validation_fraction": 0.25})
    est.fit(df)
    assert seen == {"fit_model": 0.5, "calibrate_spread": 0.5}
    assert est.get_params()["forecast_split"] == 0.5
    fc = est.extrapolate(df, horizon=1.0, n_points=3)
    assert np.isfinite(fc[["x", "v"]].to_numpy()).all()


def test_decoder_layers_builds_a_hidden_layer_decoder_that_saves_and_loads(df, tmp_path):
    est = LatentODERegressor(**{**TINY, "decoder_layers": 1}).fit(df)
    linears = [m for m in est.model_.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(12, 3), (2, 12)]
    est.save(tmp_path / "m.latentode")
    back = LatentODERegressor.load(tmp_path / "m.latentode")
    assert back.decoder_layers == 1
    pd.testing.assert_frame_equal(back.predict(df), est.predict(df))
    with pytest.raises(ValueError, match="decoder_layers"):
        LatentODERegressor(**{**TINY, "decoder_layers": -1}).fit(df)


def test_time_scale_fixes_the_model_time_unit(df):
    default = LatentODERegressor(**TINY).fit(df)
    spans = df.groupby("id")["t"].agg(lambda t: t.max() - t.min())
    assert default.time_encoder_.scale_ == pytest.approx(float(spans.median()))
    est = LatentODERegressor(**{**TINY, "time_scale": 0.25}).fit(df)
    assert est.time_encoder_.scale_ == 0.25
    # model time of the first series' last observation: (t - origin) / 0.25
    np.testing.assert_allclose(est.time_encoder_.transform([df["t"].min() + 1.0]), [4.0])
    pred = est.predict(df)
    assert np.isfinite(pred[["x", "v"]].to_numpy()).all()
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.time_encoder_.scale_ == 0.25 and loaded.get_params()["time_scale"] == 0.25
    for bad in (0, -1.0, np.inf, "1h"):
        with pytest.raises(ValueError, match="time_scale must be None or a positive finite"):
            LatentODERegressor(**{**TINY, "time_scale": bad}).fit(df)
