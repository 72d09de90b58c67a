"""Tests for latentode.data.TimeEncoder and latentode.data.ChannelScaler."""

from __future__ import annotations

import datetime as dt
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from latentode.data import ChannelScaler, TimeEncoder, validate_frame


# ------------------------------------------------------------------ TimeEncoder, numeric
def test_numeric_origin_and_median_span():
    # spans per series: 10, 20, 40 (and a single-point series, ignored) -> median 20
    t = np.array([5.0, 15.0, 0.0, 10.0, 20.0, 100.0, 140.0, 7.0])
    g = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    enc = TimeEncoder().fit(t, groups=g)
    assert enc.kind_ == "numeric" and enc.tz_ is None
    assert enc.origin_ == 0.0 and enc.scale_ == 20.0
    np.testing.assert_allclose(enc.transform(t), t / 20.0)
    # absolute time kept: no per-series offset
    assert enc.transform([100.0])[0] == 5.0


def test_numeric_round_trip_and_deltas():
    rng = np.random.default_rng(1)
    t = rng.uniform(-50, 50, size=200)
    g = rng.integers(0, 10, size=200)
    enc = TimeEncoder().fit(pd.Series(t), groups=g)
    m = enc.transform(t)
    np.testing.assert_allclose(enc.inverse_transform(m), t, rtol=0, atol=1e-12)
    assert enc.to_model_delta(2 * enc.scale_) == pytest.approx(2.0)
    np.testing.assert_allclose(enc.to_model_delta([enc.scale_, 0.0]), [1.0, 0.0])
    assert enc.from_model_delta(0.5) == pytest.approx(enc.scale_ / 2)
    with pytest.raises(ValueError, match="fitted with numeric times"):
        enc.to_model_delta(pd.Timedelta("1h"))
    with pytest.raises(ValueError, match="fitted with numeric times"):
        enc.transform(pd.to_datetime(["2020-01-01"]))


def test_scale_fallbacks_and_fixed_scale():
    assert TimeEncoder().fit([3.0, 3.0, 3.0]).scale_ == 1.0  # zero span
    assert TimeEncoder().fit([1.0, 2.0], groups=[0, 1]).scale_ == 1.0  # single points only
    assert TimeEncoder().fit([0.0, 4.0]).scale_ == 4.0  # no groups: one series
    enc = TimeEncoder(scale=2.5).fit([0.0, 100.0])
    assert enc.scale_ == 2.5 and enc.transform([5.0])[0] == 2.0


def test_invalid_fit_inputs():
    with pytest.raises(ValueError, match="unit"):
        TimeEncoder(unit="week").fit([0.0, 1.0])
    with pytest.raises(ValueError, match="scale"):
        TimeEncoder(scale=0.0).fit([0.0, 1.0])
    with pytest.raises(ValueError, match="missing or infinite"):
        TimeEncoder().fit([0.0, np.nan])
    with pytest.raises(ValueError, match="strings are not parsed"):
        TimeEncoder().fit(np.array(["2020-01-01"], dtype=object))
    with pytest.raises(ValueError, match="not fitted"):
        TimeEncoder().transform([0.0])


# ------------------------------------------------------------------ TimeEncoder, datetime
@pytest.fixture
def tz_frame() -> pd.DataFrame:
    base = pd.Timestamp("2021-03-27 20:00", tz="Europe/Paris")  # spans the DST change
    offsets = pd.to_timedelta([0, 3, 6, 12, 0, 24, 48, 1.5], unit="h")
    return pd.DataFrame({"id": [1, 1, 1, 1, 2, 2, 2, 3], "t": base + offsets,
                         "x": np.arange(8.0)})


def test_datetime_tz_round_trip(tz_frame):
    vf = validate_frame(tz_frame, time_col="t", id_col="id")
    enc = TimeEncoder(unit="h").fit(vf.times, groups=vf.series_codes)
    assert enc.kind_ == "datetime" and str(enc.tz_) == "Europe/Paris"
    assert enc.epoch_ == pd.Timestamp("2021-03-27 19:00")  # UTC, naive
    assert enc.scale_ == 30.0  # spans 12 h, 48 h, (single point ignored) -> median 30 h
    m = enc.transform(vf.times)
    expected = np.array([0, 3, 6, 12, 0, 24, 48, 1.5]) / 30.0  # hours since the first time / 30
    np.testing.assert_allclose(m, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(enc.transform(tz_frame["t"]), expected, rtol=0, atol=1e-12)
    back = enc.inverse_transform(m)
    assert isinstance(back, pd.DatetimeIndex) and str(back.tz) == "Europe/Paris"
    assert (back == vf.times).all()
    # the same instants in another timezone give the same model times
    np.testing.assert_allclose(enc.transform(tz_frame["t"].dt.tz_convert("Asia/Tokyo")),
                               expected, rtol=0, atol=1e-12)


def test_datetime_naive_and_units():
    t = pd.Series(pd.to_datetime(["2020-01-01", "2020-01-03", "2020-01-02"]))
    enc = TimeEncoder(unit="D").fit(t)
    assert enc.scale_ == 2.0 and enc.tz_ is None
    np.testing.assert_allclose(enc.transform(t), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(enc.to_user_units(t), [0.0, 2.0, 1.0])
    assert enc.to_model_delta(pd.Timedelta("12h")) == pytest.approx(0.25)
    assert enc.to_model_delta(dt.timedelta(days=1)) == pytest.approx(0.5)
    assert enc.to_model_delta(np.timedelta64(2, "D")) == pytest.approx(1.0)
    assert enc.to_model_delta("6h") == pytest.approx(0.125)
    assert enc.to_model_delta(1.0) == pytest.approx(0.5)  # float: in `unit` (days)
    assert enc.from_model_delta(0.25) == pd.Timedelta("12h")
    back = enc.inverse_transform([0.0, 0.75])
    assert back.tz is None and back.tolist() == [pd.Timestamp("2020-01-01"),
                                                 pd.Timestamp("2020-01-02 12:00")]
    assert enc.inverse_transform([np.nan]).isna().all()
    with pytest.raises(ValueError, match="fitted with datetime times"):
        enc.transform([0.0, 1.0])
    with pytest.raises(ValueError, match="naive"):
        enc.transform(t.dt.tz_localize("UTC"))
    with pytest.raises(ValueError, match="number or a Timedelta"):
        enc.to_model_delta(True)


def test_datetimes_beyond_the_nanosecond_range_are_a_value_error():
    t = pd.Series(pd.to_datetime(["2020-01-01", "2020-01-03"])).astype("datetime64[s]")
    enc = TimeEncoder(unit="D").fit(t)  # coarse units in range: read exactly
    np.testing.assert_allclose(enc.transform(t), [0.0, 1.0])
    far = pd.DatetimeIndex(np.array(["2020-01-01", "2500-06-01"], dtype="datetime64[s]"))
    for call in (lambda: enc.transform(far), lambda: TimeEncoder().fit(far)):
        with pytest.raises(ValueError, match=r"Datetimes must lie between 1677-09-21.* and "
                                             r"2262-04-11.*; got 2020-01-01 00:00:00 to "
                                             r"2500-06-01 00:00:00"):
            call()


def test_seconds_minutes_units_agree():
    t = pd.date_range("2022-06-01", periods=4, freq="90min")
    for unit, per_hour in [("s", 3600.0), ("min", 60.0), ("h", 1.0), ("D", 1 / 24)]:
        enc = TimeEncoder(unit=unit).fit(t)
        assert enc.scale_ == pytest.approx(4.5 * per_hour)
        np.testing.assert_allclose(enc.transform(t), [0, 1 / 3, 2 / 3, 1.0])


@pytest.mark.parametrize("fit_times", [
    [0.0, 1.5, 3.0],
    pd.date_range("2020-01-01", periods=3, freq="h", tz="UTC+01:00"),
    pd.date_range("2020-01-01", periods=3, freq="h"),
])
def test_persistence(fit_times):
    enc = TimeEncoder(unit="min").fit(fit_times)
    for clone in (pickle.loads(pickle.dumps(enc)),
                  TimeEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))):
        np.testing.assert_array_equal(clone.transform(fit_times), enc.transform(fit_times))
        inv_a, inv_b = clone.inverse_transform([0.3, 2.0]), enc.inverse_transform([0.3, 2.0])
        np.testing.assert_array_equal(np.asarray(inv_a), np.asarray(inv_b))
        assert str(getattr(inv_a, "tz", None)) == str(getattr(inv_b, "tz", None))
    unfitted = TimeEncoder.from_dict(TimeEncoder(unit="s").to_dict())
    assert unfitted.unit == "s" and not hasattr(unfitted, "kind_")


# ------------------------------------------------------------------ ChannelScaler
def test_scaler_statistics_ignore_nan():
    x = np.array([[1.0, np.nan, 5.0, np.nan],
                  [3.0, 2.0, 5.0, np.nan],
                  [np.nan, 4.0, 5.0, np.nan],
                  [5.0, np.nan, 5.0, np.nan]])
    s = ChannelScaler().fit(x)
    np.testing.assert_allclose(s.mean_, [3.0, 3.0, 5.0, 0.0])
    np.testing.assert_allclose(s.scale_, [np.sqrt(8 / 3), 1.0, 1.0, 1.0])  # const / empty -> 1
    assert s.n_observed_.tolist() == [3, 2, 4, 0]
    z = s.transform(x)
    np.testing.assert_array_equal(np.isnan(z), np.isnan(x))
    np.testing.assert_allclose(np.nanmean(z[:, 0]), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(z[:, 0]), 1.0)


def test_scaler_round_trip_and_shapes():
    rng = np.random.default_rng(2)
    x = rng.normal(10.0, 3.0, size=(50, 3)) * [1.0, 100.0, 0.01]
    x[rng.random(x.shape) < 0.3] = np.nan
    s = ChannelScaler().fit(pd.DataFrame(x, columns=list("abc")))
    back = s.inverse_transform(s.transform(x))
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    np.testing.assert_allclose(back, x, rtol=1e-12)
    # arbitrary leading dims (e.g. (S, B, M, C) predictions)
    y = x.reshape(5, 10, 3)
    np.testing.assert_allclose(s.transform(y), s.transform(x).reshape(5, 10, 3))
    np.testing.assert_allclose(s.inverse_std(np.ones((2, 3))), np.tile(s.scale_, (2, 1)))
    with pytest.raises(ValueError, match="3 channels"):
        s.transform(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="shape"):
        ChannelScaler().fit(np.zeros(4))
    with pytest.raises(ValueError, match="infinite"):
        ChannelScaler().fit([[np.inf]])
    with pytest.raises(ValueError, match="not fitted"):
        ChannelScaler().transform(x)
    clone = ChannelScaler.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(clone.transform(x), s.transform(x))
    clone = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(clone.inverse_transform(x), s.inverse_transform(x))
