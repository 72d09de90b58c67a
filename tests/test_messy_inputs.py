"""Messy inputs through the estimator: each case is handled or refused before any training.

Regression tests of the messy-data audits: numpy durations as horizons, datetimes that pandas
holds beyond the nanosecond range, forecast times too far out, list-valued ``id_col``, quantile
columns that would overwrite a fitted column, column lists given as an Index or array,
parameters changed after fit, numpy ids in messages and values too small to square. Tiny
models, one epoch.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from _settings import TINY

from latentode import LatentODERegressor
from latentode.data import ChannelScaler

FAST = {**TINY, "max_epochs": 1}


@pytest.fixture(scope="module")
def numeric(make_oscillators):
    """A frame whose second target is named like a quantile column of the first, fitted."""
    df = make_oscillators(6, 10).rename(columns={"v": "x_q0.1"})
    return df, LatentODERegressor(**FAST).fit(df)


@pytest.fixture(scope="module")
def dated(make_oscillators):
    """The oscillators on a timezone-aware datetime axis (hours), fitted."""
    df = make_oscillators(6, 10)
    df["t"] = pd.Timestamp("2024-03-01", tz="Europe/Paris") + pd.to_timedelta(df["t"], unit="h")
    return df, LatentODERegressor(**FAST).fit(df)


def test_quantile_columns_never_overwrite_a_fitted_column(numeric):
    df, est = numeric
    before = df.copy(deep=True)
    with pytest.raises(ValueError, match=r"The quantile column 'x_q0.1' of target 'x' would "
                                         r"overwrite the fitted column 'x_q0.1'"):
        est.predict(df, quantiles=(0.1, 0.9))
    with pytest.raises(ValueError, match="'x_q0.1'"):
        est.extrapolate(df, horizon=1.0, n_points=2, quantiles=(0.1,))
    out = est.predict(df, quantiles=(0.25,))  # other levels: every column kept
    assert list(out.columns) == ["id", "t", "x", "x_q0.25", "x_q0.1", "x_q0.1_q0.25"]
    mean = est.predict(df)
    np.testing.assert_array_equal(out["x_q0.1"].to_numpy(), mean["x_q0.1"].to_numpy())
    pd.testing.assert_frame_equal(df, before)


def test_query_times_that_overflow_the_model_are_refused_by_row(numeric):
    df, est = numeric
    with pytest.raises(ValueError, match=r"Column 't' has a query time at row 0 .* overflows "
                                         "float32 once scaled.*smaller horizon"):
        est.extrapolate(df, horizon=1e300, n_points=2)  # was an ODE error about "t"
    with pytest.raises(ValueError, match=r"query time at row 'far' \(1e\+200\)"):
        est.extrapolate(df, times=pd.DataFrame({"id": ["s0"], "t": [1e200]}, index=["far"]))


def test_numpy_and_python_durations_are_horizons(dated):
    import datetime

    df, est = dated
    ref = est.extrapolate(df, horizon=pd.Timedelta(minutes=90), n_points=3)
    assert str(ref["t"].dt.tz) == "Europe/Paris" and len(ref) == 6 * 3
    for horizon in (np.timedelta64(90, "m"), datetime.timedelta(minutes=90), "90min", 1.5):
        pd.testing.assert_frame_equal(est.extrapolate(df, horizon=horizon, n_points=3), ref)


def test_numbers_as_times_of_a_datetime_model_are_refused(dated):
    df, est = dated
    for call in (lambda: est.extrapolate(df, times=[1.0, 2.0]),
                 lambda: est.sample(df, 2, times=np.array([3, 4]))):
        with pytest.raises(ValueError, match="times must be datetimes like the time column 't'"):
            call()  # were forecasts for 1970-01-01 00:00:00.000000001, without a word
    at = pd.Timestamp("2024-03-01 08:00", tz="Europe/Paris")
    out = est.extrapolate(df, times=[at])
    assert out["t"].tolist() == [at] * 6


def test_horizons_beyond_what_pandas_holds_are_value_errors(dated):
    df, est = dated
    with pytest.raises(ValueError, match=r"horizon must be a positive finite duration of at most "
                                         r"106751 days.*got 1e\+300 h"):
        est.extrapolate(df, horizon=1e300)
    with pytest.raises(ValueError, match="passes the last datetime pandas can hold"):
        est.extrapolate(df, horizon=pd.Timedelta.max, n_points=2)


def test_datetimes_beyond_the_nanosecond_range_refused_before_training(make_oscillators, dated):
    df = make_oscillators(6, 10)
    df["t"] = np.datetime64("2500-01-01", "us") + (df["t"].to_numpy() * 3.6e9).astype(
        "timedelta64[us]")
    assert df["t"].dtype == "datetime64[us]"  # pandas holds these; nanoseconds cannot
    epochs = []
    est = LatentODERegressor(**{**FAST, "callbacks": [lambda *a: epochs.append(a[0])]})
    with pytest.raises(ValueError, match=r"Time column 't' has datetimes outside the range of "
                                         r"nanosecond timestamps .* at row\(s\) 0, 1, 2, 3, 4, "
                                         r"\.\.\. \(\d+ in total\)"):
        est.fit(df)
    assert epochs == [] and not hasattr(est, "model_")
    fitted = dated[1]
    with pytest.raises(ValueError, match="Time column 't' has datetimes outside"):
        fitted.predict(df.assign(t=df["t"].dt.tz_localize("Europe/Paris")))
    far = pd.DatetimeIndex(np.array(["2500-01-01"], dtype="datetime64[us]"), tz="UTC")
    with pytest.raises(ValueError, match="Datetimes must lie between 1677-09-21"):
        fitted.extrapolate(dated[0], times=far)


def test_several_id_columns_are_a_clear_error(make_oscillators):
    df = make_oscillators(4, 6).assign(visit=1)
    with pytest.raises(ValueError, match=r"id_col must be one column name, got \['id', "
                                         r"'visit'\]\. To identify series by several columns"):
        LatentODERegressor(**FAST).fit(df, id_col=["id", "visit"])
    keyed = df.assign(key=list(zip(df["id"], df["visit"])))  # the suggested fix works
    est = LatentODERegressor(**FAST).fit(keyed.drop(columns=["id"]), id_col="key",
                                         target_cols=["x", "v"])
    assert est.predict(keyed)["key"].iloc[0] == ("s0", 1)


def test_column_lists_may_be_a_pandas_index_or_an_array(make_oscillators):
    df = make_oscillators(6, 10)
    df["age"] = pd.factorize(df["id"])[0] * 10.0
    ref = LatentODERegressor(**FAST).fit(df, target_cols=["x"], static_cols=["age"])
    est = LatentODERegressor(**FAST).fit(df, target_cols=pd.Index(["x"]),  # was "The truth
                                         static_cols=np.array(["age"]))    # value of an Index"
    assert est.target_cols_ == ["x"] and est.static_cols_ == ["age"]
    pd.testing.assert_frame_equal(est.predict(df), ref.predict(df))
    est.set_params(warm_start=True).fit(df, target_cols=pd.Index(["x"]),
                                        static_cols=pd.Index(["age"]))
    assert len(est.history_.records) == 2  # continued, not refused


def test_parameters_read_by_every_prediction_are_checked_there(numeric):
    df, est = numeric
    est = copy.deepcopy(est)
    ref = est.predict(df)
    for name, value in (("max_steps", -1000), ("max_steps", 2.5), ("max_steps", None),
                        ("batch_size", 0), ("random_state", "x")):
        est.set_params(**{name: value})
        for call in (lambda: est.predict(df), lambda: est.score(df),
                     lambda: est.extrapolate(df, horizon=1.0, n_points=2)):
            with pytest.raises(ValueError, match=rf"^{name} must .*, got {value!r}\.$"):
                call()  # max_steps -1000 was "max_steps must be >= 1, got -978", 2.5 ran
        est.set_params(**{name: LatentODERegressor().get_params()[name]})
    est.set_params(random_state=0)
    pd.testing.assert_frame_equal(est.predict(df), ref)  # the model is intact


def test_numpy_ids_are_shown_as_python_values(numeric):
    df, est = numeric
    with pytest.raises(ValueError, match=r"for series 7 \(column 'id'\)"):  # was np.int64(7)
        est.extrapolate(df, times=pd.DataFrame({"id": [7], "t": [1.0]}))
    held = df.assign(id=pd.factorize(df["id"])[0])
    held.loc[held["id"] == 2, ["x", "x_q0.1"]] = np.nan
    with pytest.warns(UserWarning, match=r"left out of the validation series: 2 \(column"):
        LatentODERegressor(**FAST).fit(df, validation_data=held)


def test_values_too_small_to_square_are_standardised(make_oscillators):
    df = make_oscillators(6, 10)
    ref = LatentODERegressor(**FAST).fit(df)
    tiny = df.assign(x=df["x"] * 1e-170, v=df["v"] * 1e-170)  # squared deviations underflow
    est = LatentODERegressor(**FAST).fit(tiny)
    assert ChannelScaler().fit([[1e-170], [3e-170]]).scale_.tolist() == [1e-170]
    np.testing.assert_allclose(est.scaler_.scale_, ref.scaler_.scale_ * 1e-170, rtol=1e-12)
    np.testing.assert_allclose(est.predict(tiny)[["x", "v"]].to_numpy() * 1e170,
                               ref.predict(df)[["x", "v"]].to_numpy(), rtol=1e-5, atol=1e-7)
    # was scale 1: the model saw constant channels and predicted values near 0.1, not 1e-170


def test_a_bad_random_state_of_one_call_is_named(numeric):
    df, est = numeric
    for bad in ("x", -1, 2**40, 1.5):  # numpy's "cannot be used to seed" named no argument
        with pytest.raises(ValueError, match=r"^random_state must be None, an int in "
                                              rf"\[0, 2\*\*32 - 1\] .*, got {bad!r}\.$"):
            est.sample(df, 2, random_state=bad)
    a = est.sample(df, 2, random_state=np.random.RandomState(3))
    pd.testing.assert_frame_equal(a, est.sample(df, 2, random_state=np.random.RandomState(3)))


@pytest.mark.parametrize("dtype", ["int64", "Int64", "uint64"])
def test_integer_times_float64_cannot_tell_apart_are_refused(dtype):
    base = 1_700_000_000_000_000_000  # epoch nanoseconds: float64 steps by 256 here
    t = np.array([base, base + 3, base + 10**9, base + 7, base + 2 * 10**9], dtype=np.uint64)
    df = pd.DataFrame({"id": [0, 0, 0, 1, 1], "t": pd.array(t, dtype=dtype),
                       "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    before = df.copy()
    with pytest.raises(ValueError, match=r"^Time column 't' holds integers beyond 2\*\*53 .*rows "
                                          r"0, 1 of one series \(1700000000000000000 and "
                                          r"1700000000000000003\) would become the same time\."):
        LatentODERegressor(**FAST).fit(df)  # was: averaged as "duplicates", with a warning
    pd.testing.assert_frame_equal(df, before)
    apart = df.assign(t=pd.array(t + np.array([0, 997, 0, 0, 0], dtype=np.uint64), dtype=dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # series 1's base + 7 meets series 0's base: no matter
        est = LatentODERegressor(**FAST).fit(apart)
    assert est.predict(apart)["x"].notna().all()
    same = df.assign(t=pd.array(np.where(np.arange(5) == 1, t[0], t), dtype=dtype))
    with pytest.warns(UserWarning, match=r"^1 duplicate \(id, time\) rows were merged"):
        LatentODERegressor(**FAST).fit(same)  # true duplicates are still averaged


def test_hide_values_hides_duplicate_rows_together():
    from latentode.evaluation import hide_values

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": np.repeat([0, 1], 40), "t": np.tile(np.arange(40.0), 2),
                       "x": rng.normal(size=80), "y": rng.normal(size=80)})
    dup = pd.concat([df, df.iloc[::3].assign(x=df["x"].iloc[::3] + 1.0)], ignore_index=True)
    dup.loc[len(df) + 1, "y"] = np.nan  # a duplicate missing one channel
    cond, hidden = hide_values(dup, 0.5, random_state=1)
    key = ["id", "t"]
    for col, j in (("x", 0), ("y", 1)):  # per (id, time): hidden in every observed row or none
        state = pd.DataFrame({**{k: dup[k] for k in key}, "h": hidden[:, j],
                              "o": dup[col].notna()})[lambda d: d["o"]]
        assert (state.groupby(key)["h"].nunique() == 1).all(), col
    assert 0.35 < hidden[dup[["x", "y"]].notna().to_numpy()].mean() < 0.65
    first = [0, 40, len(df)]  # each series' first row, and the duplicate of the first
    assert not hidden[first].any()
    cond0, hidden0 = hide_values(df, 0.5, random_state=1)  # no duplicates: the draws as before
    rng1 = np.random.default_rng(1)
    want = df[["x", "y"]].notna().to_numpy() & (rng1.random((80, 2)) < 0.5)
    want[[0, 40]] = False
    np.testing.assert_array_equal(hidden0, want)
