"""``latentode.data.query``: horizons, forecast grids, query rows and the way back to rows.

Pure pandas / numpy: no model is fitted here.
"""

from __future__ import annotations

import datetime
import warnings

import numpy as np
import pandas as pd
import pytest

from latentode.data import (
    Query,
    TimeEncoder,
    build_query,
    encode_query,
    forecast_origins,
    horizon_delta,
    horizon_step,
    pad_query_times,
    plan_query,
    query_frame,
    rows_query,
    validate_frame,
)


def _frame() -> pd.DataFrame:
    """Three series in scrambled row order: ``b`` ends with an unobserved row, ``c`` observes
    nothing, ``a`` has a duplicate time."""
    return pd.DataFrame({
        "id": ["b", "a", "c", "b", "a", "b", "c", "a"],
        "t": [1.0, 0.5, 2.0, 3.0, 2.5, 4.0, 5.0, 2.5],
        "x": [1.0, 2.0, np.nan, 3.0, 4.0, np.nan, np.nan, 6.0],
    }, index=[10, 11, 12, 13, 14, 15, 16, 17])


def _validated(df: pd.DataFrame, id_col: str | None = "id") -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate (id, t) rows are merged
        vf = validate_frame(df, time_col="t", id_col=id_col, target_cols=["x"],
                            empty_series="keep")
    enc = TimeEncoder().fit(vf.times, groups=vf.series_codes)
    return vf, enc


def _as_datetime(df: pd.DataFrame, tz: str | None = None) -> pd.DataFrame:
    out = df.copy()
    out["t"] = pd.Timestamp("2024-03-01", tz=tz) + pd.to_timedelta(out["t"], unit="h")
    return out


# ---------------------------------------------------------------------------- horizons
def test_horizon_delta_numeric_and_datetime_units():
    assert horizon_delta(3, "numeric") == 3.0 and isinstance(horizon_delta(3, "numeric"), float)
    assert horizon_delta(1.5, "datetime", "h") == pd.Timedelta(minutes=90)
    assert horizon_delta(1.5, "datetime", "D") == pd.Timedelta(hours=36)
    assert horizon_delta("90min", "datetime", "h") == pd.Timedelta(minutes=90)
    assert horizon_delta(pd.Timedelta(seconds=5), "datetime") == pd.Timedelta(seconds=5)
    # numpy.timedelta64 is a numbers.Real (a numpy integer): read as a duration, not a number
    assert horizon_delta(np.timedelta64(90, "m"), "datetime", "h") == pd.Timedelta(minutes=90)
    assert horizon_delta(datetime.timedelta(hours=2), "datetime", "D") == pd.Timedelta(hours=2)


@pytest.mark.parametrize("kind, horizon, unit, match", [
    ("numeric", -1.0, None, "positive finite number"),
    ("numeric", 0, None, "positive finite number"),
    ("numeric", np.inf, None, "positive finite number"),
    ("numeric", np.nan, None, "positive finite number"),
    ("numeric", True, None, "positive finite number"),
    ("numeric", pd.Timedelta(hours=1), None, "positive finite number"),
    ("numeric", np.timedelta64(1, "h"), None, "positive finite number"),
    ("datetime", np.timedelta64(-1, "h"), "h", "must be positive"),
    ("datetime", 1e300, "h", r"finite duration of at most 106751 days.*got 1e\+300 h"),
    ("datetime", np.inf, "h", "finite duration"),
    ("datetime", pd.Timedelta(hours=-1), "h", "must be positive"),
    ("datetime", 0.0, "h", "must be positive"),
    ("datetime", "banana", "h", "positive Timedelta"),
    ("datetime", 2.0, None, "unit"),
])
def test_horizon_delta_rejects(kind, horizon, unit, match):
    with pytest.raises(ValueError, match=match):
        horizon_delta(horizon, kind, unit)


def test_horizon_step_divides_and_checks_n_points_first():
    assert horizon_step(3.0, 4, "numeric") == 0.75
    assert horizon_step(pd.Timedelta(hours=1), 3, "datetime") == pd.Timedelta(minutes=20)
    third = horizon_step(1.0, 3, "datetime", "s")  # rounded at the horizon's resolution
    assert abs(third - pd.Timedelta(nanoseconds=333_333_333)) < pd.Timedelta(microseconds=1)
    for bad in (0, -2, 1.0, True, None):
        with pytest.raises(ValueError, match="n_points"):
            horizon_step(-1.0, bad, "numeric")  # n_points is named before the bad horizon


# ---------------------------------------------------------------------------- grids
def test_forecast_origins_last_observed_time_in_first_appearance_order():
    vf, _ = _validated(_frame())
    codes, last = forecast_origins(vf)
    assert vf.series_ids[codes].tolist() == ["b", "a", "c"]  # first rows: b, a, c
    # b: its last row (t=4) observes nothing -> 3; a: 2.5; c observes nothing -> last row, 5
    assert list(last) == [3.0, 2.5, 5.0]


def test_forecast_origins_single_series_without_id():
    vf, _ = _validated(_frame().drop(columns="id"), id_col=None)
    codes, last = forecast_origins(vf)
    assert codes.tolist() == [0] and list(last) == [3.0]  # t=4 and t=5 observe nothing


def test_grid_steps_after_each_series_last_observation():
    df = _frame()
    vf, _ = _validated(df)
    out = query_frame(vf, horizon=2.0, n_points=4, id_dtype=df["id"].dtype)
    assert list(out.columns) == ["id", "t"] and out.index.equals(pd.RangeIndex(12))
    assert out["id"].tolist() == ["b"] * 4 + ["a"] * 4 + ["c"] * 4
    steps = np.array([0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(out["t"], np.r_[3.0 + steps, 2.5 + steps, 5.0 + steps],
                               rtol=0, atol=1e-15)


def test_grid_keeps_the_id_dtype():
    df = _frame()
    df["id"] = df["id"].map({"a": 7, "b": 3, "c": 11}).astype(np.int32)
    vf, _ = _validated(df)
    out = query_frame(vf, horizon=1.0, n_points=2, id_dtype=df["id"].dtype)
    assert out["id"].dtype == np.int32 and out["id"].tolist() == [3, 3, 7, 7, 11, 11]
    cat = _frame().astype({"id": "category"})
    vf, enc = _validated(cat)
    q = build_query(cat, vf, enc, grid=(1.0, 1))
    assert isinstance(q.frame["id"].dtype, pd.CategoricalDtype)
    assert q.frame["id"].tolist() == ["b", "a", "c"]


@pytest.mark.parametrize("tz", [None, "America/New_York"])
def test_grid_in_datetime_units(tz):
    dt = _as_datetime(_frame(), tz)
    vf, enc = _validated(dt)
    start = pd.Timestamp("2024-03-01", tz=tz)
    # a Timedelta, a float in the encoder's unit (hours) and a string give the same grid
    grids = [query_frame(vf, horizon=h, n_points=3, unit=enc.unit)
             for h in (pd.Timedelta(hours=1.5), 1.5, "90min")]
    for g in grids[1:]:
        pd.testing.assert_frame_equal(g, grids[0])
    times = grids[0]["t"]
    assert isinstance(times.dtype, pd.DatetimeTZDtype) == (tz is not None)
    hours = ((times - start) / pd.Timedelta(hours=1)).to_numpy()
    steps = np.array([0.5, 1.0, 1.5])
    np.testing.assert_allclose(hours, np.r_[3.0 + steps, 2.5 + steps, 5.0 + steps], atol=1e-12)
    # a float horizon for a datetime column needs the unit
    with pytest.raises(ValueError, match="unit"):
        query_frame(vf, horizon=1.5, n_points=3)


def test_explicit_times_for_every_series():
    vf, _ = _validated(_frame())
    out = query_frame(vf, times=[9.0, 1.0, 9.0], horizon=-5.0, n_points=0)  # grid ignored
    assert out["id"].tolist() == ["b"] * 3 + ["a"] * 3 + ["c"] * 3
    assert out["t"].tolist() == [9.0, 1.0, 9.0] * 3  # given order, repeats kept
    with pytest.raises(ValueError, match="empty"):
        query_frame(vf, times=[])
    with pytest.raises(ValueError, match="numbers like the time column"):
        query_frame(vf, times=pd.to_datetime(["2024-01-01"]))


def test_explicit_naive_datetimes_take_the_column_timezone():
    dt = _as_datetime(_frame(), "Asia/Tokyo")
    vf, _ = _validated(dt)
    naive = pd.date_range("2024-03-02", periods=2, freq="h")
    out = query_frame(vf, times=naive)
    assert str(out["t"].dt.tz) == "Asia/Tokyo"
    assert out["t"].tolist() == list(naive.tz_localize("Asia/Tokyo")) * 3


def test_explicit_numbers_for_a_datetime_column_are_refused():
    dt = _as_datetime(_frame(), "UTC")
    vf, enc = _validated(dt)
    # pandas would read them as nanoseconds after 1970-01-01: a silent forecast for 1970
    for times in ([1.0, 2.0], np.array([3, 4]), pd.Series([1.5], dtype=object)):
        with pytest.raises(ValueError, match=r"times must be datetimes like the time column "
                                             r"'t', got numbers \(\[\d"):
            build_query(dt, vf, enc, times=times)
    ok = build_query(dt, vf, enc, times=np.array(["2024-03-01T06:00"], dtype="datetime64[s]"))
    assert ok.frame["t"].tolist() == [pd.Timestamp("2024-03-01 06:00", tz="UTC")] * 3
    np.testing.assert_allclose(ok.times, enc.transform(ok.frame["t"]))


def test_times_frame_keeps_rows_index_and_order():
    df = _frame()
    vf, enc = _validated(df)
    times = pd.DataFrame({"t": [8.0, 0.0, 8.0], "id": ["c", "a", "c"], "extra": 1},
                         index=["u", "v", "u"])
    out = query_frame(vf, times=times, horizon=2.0, n_points=3)
    assert list(out.columns) == ["id", "t"] and out.index.tolist() == ["u", "v", "u"]
    assert out["id"].tolist() == ["c", "a", "c"] and out["t"].tolist() == [8.0, 0.0, 8.0]
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['id'\]"):
        query_frame(vf, times=times[["t"]])
    q = build_query(df, vf, enc, times=times)
    assert vf.series_ids[q.series_codes].tolist() == ["c", "a", "c"]
    np.testing.assert_array_equal(q.times, enc.transform([8.0, 0.0, 8.0]))
    assert times.columns.tolist() == ["t", "id", "extra"]  # the caller's frame is untouched


# ---------------------------------------------------------------------------- encoding
def test_rows_query_is_the_callers_rows():
    df = _frame()
    vf, enc = _validated(df)
    q = rows_query(df, vf, enc)
    assert isinstance(q, Query) and len(q) == len(df)
    pd.testing.assert_frame_equal(q.frame, df[["id", "t"]])
    assert vf.series_ids[q.series_codes].tolist() == df["id"].tolist()
    np.testing.assert_allclose(enc.inverse_transform(q.times), df["t"], rtol=0, atol=1e-12)
    q2 = build_query(df, vf, enc)  # neither times nor grid: the rows of df
    pd.testing.assert_frame_equal(q2.frame, q.frame)
    np.testing.assert_array_equal(q2.times, q.times)


def test_encode_query_errors_name_the_series_and_row():
    vf, enc = _validated(_frame())
    with pytest.raises(ValueError, match=r"series 'nope', 'zz' \(column 'id'\)"):
        encode_query(pd.DataFrame({"id": ["a", "nope", "zz", "nope"], "t": 1.0}), vf, enc)
    with pytest.raises(ValueError, match="infinite query times at row 'r2'"):
        encode_query(pd.DataFrame({"id": ["a", "b"], "t": [1.0, np.inf]}, index=["r1", "r2"]),
                     vf, enc)
    with pytest.raises(ValueError, match="no query times"):
        encode_query(pd.DataFrame({"id": [], "t": []}), vf, enc)
    with pytest.raises(ValueError, match="lack the column"):
        encode_query(pd.DataFrame({"t": [1.0]}), vf, enc)
    with pytest.raises(ValueError, match="Column 'id' has missing query ids at row 'q'"):
        encode_query(pd.DataFrame({"id": ["a", None], "t": 1.0}, index=["p", "q"]), vf, enc)
    with pytest.raises(ValueError, match=r"missing or infinite query times at row 11\.$"):
        encode_query(pd.DataFrame({"id": ["a", "b"], "t": [1.0, np.nan]}, index=[10, 11]),
                     vf, enc)  # a plain 11, not np.int64(11)


def test_query_times_that_overflow_float32_name_the_row():
    vf, enc = _validated(_frame())  # model time = (t - 0.5) / 3: origin 0.5, median span 3
    ok = encode_query(pd.DataFrame({"id": ["a"], "t": [9e38]}), vf, enc)  # 3e38 < 3.4e38
    np.testing.assert_allclose(ok.times, [3e38], rtol=1e-12)
    with pytest.raises(ValueError, match=r"query time at row 'r2' \(1e\+300\) that lies "
                                         r"3.33e\+299 typical series spans.*overflows float32"):
        encode_query(pd.DataFrame({"id": ["a", "b"], "t": [1.0, 1e300]}, index=["r1", "r2"]),
                     vf, enc)
    # the grid's first time: b's last observation 3 + 1e300 / 2
    with pytest.raises(ValueError, match=r"row 0 \(5e\+299\).*a smaller horizon"):
        build_query(_frame(), vf, enc, grid=(1e300, 2))


def test_datetime_grid_past_the_last_timestamp_is_a_value_error():
    df = _frame()
    df["t"] = pd.Timestamp("2262-04-01") + pd.to_timedelta(df["t"], unit="D")
    vf, enc = _validated(df)
    assert build_query(df, vf, enc, grid=("1D", 2)).frame["t"].max() == pd.Timestamp("2262-04-07")
    for horizon in ("30D", np.timedelta64(10**6, "D")):
        with pytest.raises(ValueError, match=r"grid of horizon .* after the last observations "
                                             r"\(latest 2262-04-06 00:00:00\) passes the last "
                                             "datetime pandas can hold"):
            build_query(df, vf, enc, grid=(horizon, 2))


def test_build_query_grid_for_a_single_series_without_id():
    df = _frame().drop(columns="id")
    vf, enc = _validated(df, id_col=None)
    q = build_query(df, vf, enc, grid=(1.0, 2))
    assert list(q.frame.columns) == ["t"] and q.frame["t"].tolist() == [3.5, 4.0]
    assert q.series_codes.tolist() == [0, 0]


# ---------------------------------------------------------------------------- plan, scatter
def test_plan_matches_pad_query_times_and_reads_rows_back():
    rng = np.random.default_rng(0)
    n_series = 6
    codes = rng.integers(0, n_series, size=80)
    times = rng.integers(0, 7, size=80) * 0.25  # repeated (series, time) pairs
    cond_lengths = np.array([3, 0, 2, 5, 0, 1])  # series 1 and 4: nothing observed
    plan = plan_query(codes, times, cond_lengths)
    live = cond_lengths[codes] > 0
    assert plan.series.tolist() == sorted(set(codes[live].tolist()))
    assert plan.unconditioned.tolist() == sorted(set(codes[~live].tolist()))
    ref = pad_query_times(np.searchsorted(plan.series, codes[live]), times[live],
                          len(plan.series))
    np.testing.assert_array_equal(plan.times, ref.times)
    np.testing.assert_array_equal(plan.lengths, ref.lengths)
    assert (plan.row_point[~live] == -1).all()
    # a packed "prediction" holding each point's (series, time) reads back as every row's own
    valid = np.arange(plan.times.shape[1]) < plan.lengths[:, None]
    packed = np.stack([np.broadcast_to(plan.series[:, None], valid.shape)[valid],
                       plan.times[valid]], axis=-1)  # (P, 2)
    assert packed.shape[0] == plan.n_points
    rows = plan.gather_rows(packed[None], axis=1)[0]  # (Q, 2)
    np.testing.assert_array_equal(rows[live, 0], codes[live])
    np.testing.assert_array_equal(rows[live, 1], times[live])
    assert np.isnan(rows[~live]).all()
    # any axis; an int array takes a float fill value
    per_row = plan.gather_rows(np.arange(plan.n_points), fill_value=-1.5, axis=0)
    assert per_row.dtype == np.float64 and (per_row[~live] == -1.5).all()
    with pytest.raises(ValueError, match="packed points"):
        plan.gather_rows(np.zeros((plan.n_points + 1, 2)), axis=0)


def test_plan_with_nothing_to_condition_on():
    plan = plan_query([0, 1, 0], [0.1, 0.2, 0.3], [0, 0])
    assert plan.n_points == 0 and plan.series.size == 0
    assert plan.unconditioned.tolist() == [0, 1]
    assert np.isnan(plan.gather_rows(np.zeros((2, 0, 3)))).all()
    assert plan.gather_rows(np.zeros((2, 0, 3))).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="series_codes"):
        plan_query([0, 2], [0.1, 0.2], [1, 1])
