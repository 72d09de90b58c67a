"""Validation series given apart: ``LatentODERegressor.fit(..., validation_data=)`` and
:func:`latentode.data.validate_holdout` (equivalence with the drawn split, the calibration on
the given series, the training frame's encoders, refusals before training, frames untouched)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY
from sklearn.base import clone

import latentode.data
import latentode.estimator
from latentode import LatentODEClassifier, LatentODERegressor
from latentode.data import (
    ChannelScaler,
    TimeEncoder,
    iterate_batches,
    pad_frame,
    validate_frame,
    validate_holdout,
)
from latentode.training import calibrate_spread
from latentode.utils import draw_seed, make_generator


@pytest.fixture(scope="module")
def frames(make_oscillators) -> tuple[pd.DataFrame, pd.DataFrame]:
    """12 training series ``s*`` and 5 validation series ``v*`` (other draws, ids sorting
    after the training ones)."""
    train = make_oscillators(n_series=12, n_points=14, seed=1)
    val = make_oscillators(n_series=5, n_points=14, seed=2)
    val["id"] = val["id"].str.replace("s", "v")
    return train, val


def _state(est: LatentODERegressor) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in est.model_.state_dict().items()}


def test_equals_the_drawn_split_that_chose_those_series(frames, monkeypatch):
    """With the encoders fixed (warm start), a fit given ``validation_data`` is the fit of the
    joined frame whose split drew exactly those series: same weights, history, factors."""
    train, val = frames
    base = LatentODERegressor(**{**TINY, "max_epochs": 1}).fit(train)
    given = copy.deepcopy(base).set_params(warm_start=True, max_epochs=3)
    given.fit(train, validation_data=val)

    n_train, n_val = train["id"].nunique(), val["id"].nunique()
    real = latentode.data.split_series
    calls = []

    def chosen(n, *args, **kwargs):
        calls.append(real(n, *args, **kwargs))
        assert n == n_train + n_val
        return np.arange(n_train), np.arange(n_train, n)

    monkeypatch.setattr(latentode.data, "split_series", chosen)
    drawn = copy.deepcopy(base).set_params(warm_start=True, max_epochs=3)
    drawn.fit(pd.concat([train, val], ignore_index=True))
    assert len(calls) == 1

    assert given.history_.n_epochs == drawn.history_.n_epochs == 4
    assert given.history_.best_val_loss == drawn.history_.best_val_loss is not None
    a, b = _state(given), _state(drawn)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert float(given.model_.spread_scale[0]) != 1.0  # calibrated
    q = (0.05, 0.95)
    pa = given.predict(val, quantiles=q, n_samples=20)
    pb = drawn.predict(val, quantiles=q, n_samples=20)
    pd.testing.assert_frame_equal(pa, pb)


def test_calibration_comes_from_the_given_series(frames):
    train, val = frames
    # every factor from the given series (the former default path, set explicitly)
    est = LatentODERegressor(**{**TINY, "max_epochs": 3, "calibration_structure": "validation"}
                             ).fit(train, validation_data=val)
    # the training frame alone fits the encoders (not the joined frame)
    vf = validate_frame(train, time_col="t", id_col="id", empty_series="drop")
    scaler = ChannelScaler().fit(vf.values)
    np.testing.assert_array_equal(est.scaler_.mean_, scaler.mean_)
    np.testing.assert_array_equal(est.scaler_.scale_, scaler.scale_)
    enc = TimeEncoder().fit(vf.times, groups=vf.series_codes)
    assert est.time_encoder_.scale_ == enc.scale_
    joined = validate_frame(pd.concat([train, val]), time_col="t", id_col="id")
    assert not np.allclose(ChannelScaler().fit(joined.values).mean_, scaler.mean_)

    # the factors by hand: the fitted weights, calibrated on the given series
    model = copy.deepcopy(est.model_)
    model.spread_scale.fill_(1.0)
    model.gap_spread.reset()
    held = pad_frame(validate_frame(val, time_col="t", id_col="id"), est.time_encoder_,
                     est.scaler_)
    seed = np.random.SeedSequence(draw_seed(TINY["random_state"])).generate_state(3)[2]
    calibrate_spread(model, list(iterate_batches(held, TINY["batch_size"])),
                     generator=make_generator(int(seed) + 1))
    factors = est.model_.spread_scale.detach().numpy()
    np.testing.assert_array_equal(model.spread_scale.detach().numpy(), factors)
    assert np.all(factors != 1.0)
    np.testing.assert_array_equal(model.gap_spread.factors.detach().numpy(),
                                  est.model_.gap_spread.factors.detach().numpy())
    # and not those of the drawn split (the default fit of the same frame)
    drawn = LatentODERegressor(**{**TINY, "max_epochs": 3}).fit(train)
    assert not np.allclose(drawn.model_.spread_scale.detach().numpy(), factors)


def test_validation_fraction_is_not_used(frames, monkeypatch):
    train, val = frames
    monkeypatch.setattr(latentode.data, "split_series", None)  # never called
    a = LatentODERegressor(**TINY, validation_fraction=0.0).fit(train, validation_data=val)
    b = LatentODERegressor(**TINY, validation_fraction=0.5).fit(train, validation_data=val)
    assert a.history_.best_val_loss == b.history_.best_val_loss is not None
    assert a.history_.monitor == "val_loss"
    for k, v in _state(a).items():
        torch.testing.assert_close(v, _state(b)[k], rtol=0, atol=0)


def _forbid_training(monkeypatch):
    def no(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(latentode.estimator, "_fit_model", no)


@pytest.mark.parametrize("edit, match", [
    (lambda v: v.drop(columns="v"), r"validation_data: .*'v'"),
    (lambda v: v.drop(columns="id"), r"validation_data: .*'id'"),
    (lambda v: v.assign(x=np.nan, v=np.nan),
     r"validation_data: No series has an observed value .*all 5 series are empty"),
    (lambda v: v.assign(t=v["t"].where(v.index != 3, np.nan)), r"validation_data: .*'t'"),
    (lambda v: v.assign(t=pd.to_datetime(v["t"], unit="h")),
     r"validation_data: its time column 't' is datetime, the training frame's is numeric"),
])
def test_unusable_frames_are_refused_before_training(frames, monkeypatch, edit, match):
    train, val = frames
    _forbid_training(monkeypatch)
    est = LatentODERegressor(**TINY)
    with pytest.raises(ValueError, match=match):
        est.fit(train, validation_data=edit(val))
    assert not est.__sklearn_is_fitted__()
    with pytest.raises(TypeError, match="validation_data must be a pandas DataFrame"):
        est.fit(train, validation_data=val.to_numpy())


def test_validation_times_in_another_timezone_are_the_same_instants(frames, monkeypatch):
    train, val = frames
    start = pd.Timestamp("2024-03-01", tz="UTC")
    train = train.assign(t=start + pd.to_timedelta(train["t"], unit="h"))
    utc = val.assign(t=start + pd.to_timedelta(val["t"], unit="h"))
    paris = utc.assign(t=utc["t"].dt.tz_convert("Europe/Paris"))
    ref = LatentODERegressor(**TINY).fit(train, validation_data=utc)
    est = LatentODERegressor(**TINY).fit(train, validation_data=paris)  # was refused
    assert est.history_["val_loss"] == ref.history_["val_loss"]
    _forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"validation_data: its time column 't' is datetime, "
                                         r"the training frame's is datetime \(UTC\)"):
        LatentODERegressor(**TINY).fit(train, validation_data=utc.assign(
            t=utc["t"].dt.tz_localize(None)))  # naive against aware: still refused


def test_group_col_with_validation_data_is_refused(frames, monkeypatch):
    train, val = frames
    _forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"group_col='id' .* with validation_data no split"):
        LatentODERegressor(**TINY).fit(train, group_col="id", validation_data=val)


def test_static_columns_are_read_and_checked(frames):
    train, val = frames
    train = train.assign(arm=train["id"].str[1:].astype(int) % 2 == 0)
    val = val.assign(arm=val["id"].str[1:].astype(int) % 2 == 0)
    est = LatentODERegressor(**TINY).fit(train, static_cols=["arm"], validation_data=val)
    assert est.history_.best_val_loss is not None
    with pytest.raises(ValueError, match=r"validation_data: Missing static column 'arm'"):
        LatentODERegressor(**TINY).fit(train, static_cols=["arm"],
                                       validation_data=val.drop(columns="arm"))
    varying = val.copy()
    varying.loc[varying.index[0], "arm"] = not varying["arm"].iloc[0]
    with pytest.raises(ValueError, match=r"validation_data: .*'v0'"):
        LatentODERegressor(**TINY).fit(train, static_cols=["arm"], validation_data=varying)


def test_empty_series_are_left_out_with_a_warning(frames):
    train, val = frames
    val = val.copy()
    val.loc[val["id"] == "v1", ["x", "v"]] = np.nan
    vf = validate_frame(train, time_col="t", id_col="id")
    with pytest.warns(UserWarning, match=r"validation_data: 1 series has no observed value.*"
                                         r"'v1' \(column 'id'\)"):
        held, static = validate_holdout(val, vf)
    assert held.series_ids.tolist() == ["v0", "v2", "v3", "v4"] and static is None


def test_frames_unmodified_and_params_untouched(frames):
    train, val = frames
    t0, v0 = train.copy(deep=True), val.copy(deep=True)
    est = LatentODERegressor(**TINY)
    params = est.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.fit(train, validation_data=val)
    pd.testing.assert_frame_equal(train, t0)
    pd.testing.assert_frame_equal(val, v0)
    assert est.get_params() == params and "validation_data" not in params
    assert clone(est).get_params() == params
    assert not hasattr(est, "validation_data") and not hasattr(est, "validation_data_")


# ---------------------------------------------------------------------------- the classifier
def _labels(frame: pd.DataFrame) -> pd.Series:
    ids = frame["id"].unique()
    return pd.Series(["odd" if int(i[1:]) % 2 else "even" for i in ids], index=ids)


def test_classifier_equals_the_drawn_split_that_chose_those_series(frames, monkeypatch):
    train, val = frames
    y, y_val = _labels(train), _labels(val)
    base = LatentODEClassifier(**{**TINY, "max_epochs": 1}, classifier="latent").fit(train, y)
    given = copy.deepcopy(base).set_params(warm_start=True, max_epochs=3)
    given.fit(train, y, validation_data=(val, y_val))
    n_train = train["id"].nunique()
    monkeypatch.setattr(latentode.data, "split_series",
                        lambda n, *a, **k: (np.arange(n_train), np.arange(n_train, n)))
    drawn = copy.deepcopy(base).set_params(warm_start=True, max_epochs=3)
    drawn.fit(pd.concat([train, val], ignore_index=True), pd.concat([y, y_val]))
    assert given.history_.monitor == "val_log_loss"
    assert given.history_.best_val_loss == drawn.history_.best_val_loss is not None
    for k, v in _state(given).items():
        torch.testing.assert_close(v, _state(drawn)[k], rtol=0, atol=0, msg=k)
    pd.testing.assert_frame_equal(given.predict_proba(val), drawn.predict_proba(val))


def test_classifier_validation_labels_are_checked(frames, monkeypatch):
    train, val = frames
    y, y_val = _labels(train), _labels(val)
    _forbid_training(monkeypatch)
    clf = LatentODEClassifier(**TINY)
    with pytest.raises(ValueError, match=r"validation_data must be a pair \(df_val, y_val\)"):
        clf.fit(train, y, validation_data=val)
    with pytest.raises(ValueError, match=r"validation_data: labels 'other' of series 'v1', 'v3' "
                                         r"\(column 'id'\) are no class of y"):
        clf.fit(train, y, validation_data=(val, y_val.replace({"odd": "other"})))
    with pytest.raises(ValueError, match=r"validation_data: y has no label for 1 series of df: "
                                         r"'v3'"):
        clf.fit(train, y, validation_data=(val, y_val.drop("v3")))
    with pytest.raises(ValueError, match=r"validation_data: .*'x'"):
        clf.fit(train, y, validation_data=(val.drop(columns="x"), y_val))
    # one label per row of the validation frame is read as for y
    rows = val["id"].map(y_val)
    semi = LatentODEClassifier(**TINY, semi_supervised=True)
    held = validate_frame(val, time_col="t", id_col="id")
    codes, weights = semi._held_labels(val, held, rows.where(val["id"] != "v2"),
                                       np.array(["even", "odd"]), np.array([0, 1, 1]))
    assert codes.tolist() == [0, 1, -1, 1, 0] and weights.tolist() == [1, 1, 0, 1, 1]
    balanced = LatentODEClassifier(**TINY, class_weight="balanced")
    codes, weights = balanced._held_labels(val, held, rows, np.array(["even", "odd"]),
                                           np.array([0, 1, 1]))  # training: 1 even, 2 odd
    assert codes.tolist() == [0, 1, 0, 1, 0]
    np.testing.assert_allclose(weights, [1.5, 0.75, 1.5, 0.75, 1.5])
