"""Tests for latentode.data.validation: errors name the culprit, input untouched, sorting."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from latentode.data import ValidatedFrame, validate_frame

# the fixture's text column is left out of inferred targets with a warning, tested below
pytestmark = pytest.mark.filterwarnings("ignore:Target columns chosen automatically")


@pytest.fixture
def df() -> pd.DataFrame:
    """Three series, shuffled rows, a non-default index, NaN targets and an extra text column."""
    rng = np.random.default_rng(0)
    ids = np.repeat(["s1", "s0", "s2"], [4, 3, 5])
    t = np.concatenate([[0.0, 1.0, 2.5, 4.0], [0.5, 1.0, 3.0], [0.0, 0.2, 0.4, 0.8, 1.6]])
    x = rng.normal(size=12)
    y = rng.normal(size=12)
    x[[1, 5]] = np.nan
    y[[0, 7]] = np.nan
    frame = pd.DataFrame({"id": ids, "t": t, "x": x, "y": y, "note": list("abcdefghijkl")},
                         index=[f"r{i}" for i in range(12)])
    return frame.iloc[rng.permutation(12)]


def _check(df: pd.DataFrame, match: str, **kwargs) -> None:
    kwargs.setdefault("time_col", "t")
    kwargs.setdefault("id_col", "id")
    with pytest.raises(ValueError, match=match):
        validate_frame(df, **kwargs)


# ------------------------------------------------------------------ valid input
def test_basic_structure(df):
    vf = validate_frame(df, time_col="t", id_col="id")
    assert isinstance(vf, ValidatedFrame)
    assert vf.series_ids.tolist() == ["s0", "s1", "s2"]
    assert vf.target_cols == ["x", "y"]  # "note" (text) is not numeric, "id"/"t" excluded
    assert vf.time_kind == "numeric" and vf.n_duplicates == 0
    assert (vf.n_series, vf.n_slots, vf.n_rows, vf.n_channels) == (3, 12, 12, 2)
    assert vf.lengths.tolist() == [3, 4, 5]
    # slots sorted by series then time
    assert np.all(np.diff(vf.series_codes) >= 0)
    t = np.asarray(vf.times)
    same = vf.series_codes[1:] == vf.series_codes[:-1]
    assert np.all(np.diff(t)[same] > 0)
    # every original row maps to a slot holding its own values, id and time
    np.testing.assert_array_equal(vf.values[vf.row_slot], df[["x", "y"]].to_numpy())
    np.testing.assert_array_equal(t[vf.row_slot], df["t"].to_numpy())
    assert vf.series_ids[vf.row_series_codes].tolist() == df["id"].tolist()
    assert vf.row_index.equals(df.index)
    assert vf.observed.sum() == df[["x", "y"]].notna().to_numpy().sum()


def test_input_not_modified(df):
    before = df.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validate_frame(df, time_col="t", id_col="id", target_cols=["y", "x"])
        dup = pd.concat([df, df.iloc[:3]])
        dup_before = dup.copy(deep=True)
        validate_frame(dup, time_col="t", id_col="id")
    pd.testing.assert_frame_equal(df, before)
    pd.testing.assert_frame_equal(dup, dup_before)


def test_unsorted_equals_sorted(df):
    a = validate_frame(df, time_col="t", id_col="id")
    b = validate_frame(df.sort_values(["id", "t"]), time_col="t", id_col="id")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.series_codes, b.series_codes)
    pd.testing.assert_index_equal(a.times, b.times)
    # row mapping follows each caller's row order: same rows -> same slots
    slot_a = pd.Series(a.row_slot, index=df.index)
    slot_b = pd.Series(b.row_slot, index=df.sort_values(["id", "t"]).index)
    pd.testing.assert_series_equal(slot_a.sort_index(), slot_b.sort_index())


def test_target_cols_order_and_subset(df):
    vf = validate_frame(df, time_col="t", id_col="id", target_cols=["y"])
    assert vf.target_cols == ["y"] and vf.values.shape == (12, 1)
    np.testing.assert_array_equal(vf.values[vf.row_slot, 0], df["y"].to_numpy())


def test_no_id_col_is_one_series(df):
    single = df[df["id"] == "s2"].drop(columns="id")
    vf = validate_frame(single, time_col="t", id_col=None)
    assert vf.series_ids.tolist() == [0] and vf.n_series == 1
    assert vf.series_codes.tolist() == [0] * 5
    np.testing.assert_array_equal(np.asarray(vf.times), [0.0, 0.2, 0.4, 0.8, 1.6])


def test_integer_ids_sorted_and_nullable_targets():
    df = pd.DataFrame({
        "id": [10, 2, 10, 2],
        "t": pd.array([3, 1, 0, 2], dtype="Int64"),
        "x": pd.array([1.0, None, 3.0, 4.0], dtype="Float64"),
        "flag": [True, False, True, True],
    })
    with pytest.warns(UserWarning, match=r"bookkeeping .*'flag' \(bool"):
        vf = validate_frame(df, time_col="t", id_col="id")
    assert vf.series_ids.tolist() == [2, 10]
    assert vf.target_cols == ["x", "flag"]  # bool is a numeric target (0.0 / 1.0)
    np.testing.assert_array_equal(vf.values, [[np.nan, 0.0], [4.0, 1.0], [3.0, 1.0], [1.0, 1.0]])
    assert vf.times.dtype == np.float64


def test_mixed_type_ids():
    df = pd.DataFrame({"id": ["b", 1, "b"], "t": [1.0, 0.0, 0.0], "x": [1.0, 2.0, 3.0]})
    vf = validate_frame(df, time_col="t", id_col="id")
    assert sorted(vf.series_ids.tolist(), key=str) == [1, "b"]
    assert vf.series_ids[vf.row_series_codes].tolist() == ["b", 1, "b"]
    np.testing.assert_array_equal(vf.values[vf.row_slot, 0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.asarray(vf.times)[vf.row_slot], [1.0, 0.0, 0.0])


def test_datetime_tz_times_sorted():
    t = pd.to_datetime(["2024-01-01 02:00", "2024-01-01 00:00", "2024-01-01 01:00"]).tz_localize(
        "America/New_York")
    df = pd.DataFrame({"t": t, "x": [3.0, 1.0, 2.0]})
    vf = validate_frame(df, time_col="t", id_col=None)
    assert vf.time_kind == "datetime"
    assert str(vf.tz) == "America/New_York"
    assert vf.times.is_monotonic_increasing
    np.testing.assert_array_equal(vf.values[:, 0], [1.0, 2.0, 3.0])
    assert vf.row_slot.tolist() == [2, 0, 1]


def test_expected_targets_extra_columns_ignored(df):
    vf = validate_frame(df.assign(extra=1.0), time_col="t", id_col="id", expected_targets=["x"])
    assert vf.target_cols == ["x"]


# ------------------------------------------------------------------ duplicates
def test_duplicates_merged_by_mean_with_one_warning():
    df = pd.DataFrame({
        "id": ["a", "a", "a", "b", "a", "b"],
        "t": [1.0, 0.0, 1.0, 5.0, 1.0, 5.0],
        "x": [1.0, 7.0, 3.0, 10.0, np.nan, np.nan],
        "y": [np.nan, 0.0, np.nan, 2.0, 6.0, 4.0],
    })
    message = r"^3 duplicate .* into 2 time points .* row 2\)"  # row label of the 1st dup
    with pytest.warns(UserWarning, match=message) as record:
        vf = validate_frame(df, time_col="t", id_col="id")
    assert len(record) == 1
    assert vf.n_duplicates == 3 and vf.n_slots == 3
    np.testing.assert_array_equal(np.asarray(vf.times), [0.0, 1.0, 5.0])
    np.testing.assert_allclose(vf.values, [[7.0, 0.0], [2.0, 6.0], [10.0, 3.0]])
    assert vf.row_slot.tolist() == [1, 0, 1, 2, 1, 2]


def test_duplicates_all_nan_channel_stays_nan():
    df = pd.DataFrame({"t": [0.0, 0.0, 1.0], "x": [np.nan, np.nan, 1.0], "y": [1.0, 3.0, 1.0]})
    with pytest.warns(UserWarning, match="1 duplicate"):
        vf = validate_frame(df, time_col="t", id_col=None)
    assert np.isnan(vf.values[0, 0]) and vf.values[0, 1] == 2.0


def test_no_warning_without_duplicates(df):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_frame(df, time_col="t", id_col="id", target_cols=["x", "y"])
        validate_frame(df.drop(columns="note"), time_col="t", id_col="id")


# ------------------------------------------------------------------ errors
def test_not_a_dataframe():
    with pytest.raises(TypeError, match="DataFrame"):
        validate_frame(np.zeros((3, 2)), time_col="t", id_col=None)


def test_empty_frame(df):
    _check(df.iloc[:0], "empty")
    _check(pd.DataFrame(), "empty")


def test_missing_columns(df):
    _check(df, r"Unknown time column 'time'.*available columns: .*'t'", time_col="time")
    _check(df, r"Unknown id column 'series'.*available columns", id_col="series")
    _check(df, r"Unknown target columns 'z', 'w'.*available", target_cols=["x", "z", "w"])
    _check(df, "id_col and time_col", id_col="t")
    _check(df, "also the id or time column", target_cols=["x", "t"])
    _check(df, "more than once", target_cols=["x", "x"])
    _check(df, "target_cols is empty", target_cols=[])


def test_no_numeric_targets(df):
    _check(df[["id", "t", "note"]], "No numeric target column")


def test_non_numeric_target_named(df):
    _check(df, r"non-numeric: 'note'", target_cols=["x", "note"])
    cat = df.assign(c=pd.Categorical(df["note"]))
    _check(cat, r"'c' \(category\)", target_cols=["c"])


def test_time_column_dtypes(df):
    _check(df.assign(t=df["t"].astype(str)), r"'t'.*strings.*pandas\.to_datetime")
    mixed = df.assign(t=pd.Series([pd.Timestamp("2020-01-01")] + [1.0] * 11, index=df.index,
                                  dtype=object))
    _check(mixed, r"'t'.*mixes values of different types")
    aware = pd.Series([pd.Timestamp("2020-01-01", tz="UTC"),
                       pd.Timestamp("2020-01-01", tz="Europe/Paris")] * 6, index=df.index,
                      dtype=object)
    _check(df.assign(t=aware), r"'t'.*object column of datetimes")
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(len(df)), unit="D")
    _check(df.assign(t=dates.date), r"Time column 't' has dtype object; .* It holds dates "
                                    r"\(datetime\.date objects\): convert it with "
                                    r"pandas\.to_datetime first\.$")  # was "mixed timezones"
    _check(df.assign(t=pd.to_timedelta(df["t"], unit="h")), r"'t'.*total_seconds")
    _check(df.assign(t=df["t"] > 1), r"Time column 't' has dtype bool")


def test_nan_and_inf_times_name_rows(df):
    bad = df.copy()
    bad.loc["r3", "t"] = np.nan
    bad.loc["r7", "t"] = np.inf
    with pytest.raises(ValueError, match="'t'") as info:
        validate_frame(bad, time_col="t", id_col="id")
    assert "'r3'" in str(info.value) and "'r7'" in str(info.value)


def test_nat_times_name_rows():
    df = pd.DataFrame({"t": pd.to_datetime(["2020-01-01", None, "2020-01-03"]), "x": [1.0] * 3},
                      index=[5, 6, 7])
    _check(df, r"Time column 't' has missing \(NaT\) times at row\(s\) 6", id_col=None)


@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_datetimes_beyond_the_nanosecond_range_name_rows(tz):
    # pandas holds datetime64[us] up to year 294247; the time encoder works in nanoseconds
    t = np.datetime64("2500-01-01T00:00", "us") + np.array([0, 1, 0, 2]).astype("timedelta64[h]")
    df = pd.DataFrame({"id": [0, 0, 1, 1], "t": t, "x": [1.0, 2.0, 3.0, 4.0]},
                      index=["p", "q", "r", "s"])
    df.loc["q", "t"] = pd.Timestamp("2024-01-01")  # in range
    if tz is not None:
        df["t"] = df["t"].dt.tz_localize(tz)
    assert df["t"].dt.unit == "us"
    _check(df, r"Time column 't' has datetimes outside the range of nanosecond timestamps "
               r"\(1677-09-21 00:12:43.145224193 to 2262-04-11 23:47:16.854775807\) at row\(s\) "
               r"'p', 'r', 's', e.g. 2500-01-01 00:00:00")
    ok = df.drop(index=["p", "r", "s"])  # microsecond datetimes in range are read as they are
    vf = validate_frame(ok, time_col="t", id_col="id")
    assert vf.times.tolist() == ok["t"].tolist() and vf.time_kind == "datetime"


def test_unhashable_ids_and_column_names_are_value_errors(df):
    lists = df.assign(id=[[i] if k % 4 == 1 else (i,) for k, i in enumerate(df["id"])])
    rows = ", ".join(repr(r) for r in lists.index[1::4])
    _check(lists, rf"Id column 'id' has unhashable ids \(list\) at row\(s\) {rows}; ids must "
                  r"be hashable \(e.g. tuples instead of lists\)")
    _check(df, r"id_col must be one column name, got \['id', 'note'\]\. To identify series "
               r"by several columns, combine them", id_col=["id", "note"])
    _check(df, r"time_col must be one column name, got \['t'\]\.$", time_col=["t"])
    tuples = df.assign(id=[(i, 1) for i in df["id"]])  # hashable composite ids are fine
    vf = validate_frame(tuples, time_col="t", id_col="id")
    assert vf.series_ids.tolist() == [("s0", 1), ("s1", 1), ("s2", 1)]


def test_keys_in_the_index_say_so(df):
    _check(df.set_index("id"), r"Unknown id column 'id'; available columns: 't', 'x', 'y', "
                               r"'note'\. 'id' is an index level of the frame: move it to the "
                               r"columns with df\.reset_index\(\)\.$")
    _check(df.set_index(["id", "t"]), r"Unknown time column 't'.* 't', 'id' are index levels "
                                      r"of the frame: move them to the columns")
    _check(df.drop(columns="id"), "If the frame holds a single series, pass id_col=None")


def test_nan_ids_name_rows(df):
    bad = df.copy()
    bad.loc["r4", "id"] = None
    _check(bad, r"Id column 'id' has missing ids at row\(s\) 'r4'")


def test_inf_target_names_column_and_row(df):
    bad = df.copy()
    bad.loc["r9", "y"] = -np.inf
    _check(bad, r"Target column 'y' has infinite values at row\(s\) 'r9'")


def test_all_nan_series_named(df):
    bad = df.copy()
    bad.loc[bad["id"] == "s1", ["x", "y"]] = np.nan
    _check(bad, r"1 series have no observed target value: 's1' \(column 'id'\)")
    vf = validate_frame(bad, time_col="t", id_col="id", empty_series="keep", min_points=2)
    assert vf.n_series == 3 and np.isnan(vf.values[vf.series_codes == 1]).all()
    assert vf.n_observed_points.tolist() == [3, 0, 5] and len(vf.dropped_series) == 0


def test_min_points_names_series(df):
    # s0 keeps only one observed time point; its other rows are all-NaN
    bad = df.copy()
    bad.loc[(bad["id"] == "s0") & (bad["t"] > 0.5), ["x", "y"]] = np.nan
    assert validate_frame(bad, time_col="t", id_col="id").n_series == 3  # min_points=1 is fine
    _check(bad, r"fewer than 2 observed time points: 's0'", min_points=2)
    # duplicates at one time count as one point
    dup = pd.DataFrame({"id": [1, 1, 2, 2], "t": [0.0, 0.0, 0.0, 1.0], "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.warns(UserWarning):
        _check(dup, r"fewer than 2 observed time points: 1 \(column 'id'\)", min_points=2)


def test_expected_targets_missing_named(df):
    _check(df.drop(columns="y"), r"Missing target column 'y' that the model was fitted with",
           expected_targets=["x", "y"])
    _check(df, "differ from the expected", target_cols=["x"], expected_targets=["x", "y"])


def test_error_lists_first_few_ids():
    n = 8
    df = pd.DataFrame({"id": np.arange(n), "t": 0.0, "x": np.nan, "y": 1.0})
    df.loc[0, "x"] = 1.0
    with pytest.raises(ValueError, match=r"8 series have fewer than 2.*0, 1, 2, 3, 4, \.\.\. "
                                         r"\(8 in total\)"):
        validate_frame(df, time_col="t", id_col="id", min_points=2)


# ------------------------------------------------------------------ real-data robustness
def test_empty_series_dropped_consistently(df):
    bad = df.copy()
    bad.loc[bad["id"] == "s1", ["x", "y"]] = np.nan
    vf = validate_frame(bad, time_col="t", id_col="id", empty_series="drop")
    assert vf.dropped_series.tolist() == ["s1"]
    assert vf.series_ids.tolist() == ["s0", "s2"] and vf.n_series == 2
    kept = bad[bad["id"] != "s1"]
    assert vf.n_rows == len(kept) == 8
    assert vf.row_index.equals(kept.index)  # the caller's order, without the dropped rows
    assert vf.series_ids[vf.row_series_codes].tolist() == kept["id"].tolist()
    np.testing.assert_array_equal(vf.values[vf.row_slot, 0], kept["x"].to_numpy())
    np.testing.assert_array_equal(np.asarray(vf.times)[vf.row_slot], kept["t"].to_numpy())
    assert vf.n_observed_points.tolist() == [3, 5]
    # nothing to drop: same frame as the default
    full = validate_frame(df, time_col="t", id_col="id", empty_series="drop")
    assert len(full.dropped_series) == 0 and full.n_series == 3
    # every series empty: an error, not an empty frame
    none = bad.assign(x=np.nan, y=np.nan)
    _check(none, r"No series has an observed value .*'x', 'y'.*all 3 series",
           target_cols=["x", "y"], empty_series="drop")
    _check(df, "empty_series must be", empty_series="skip")


def test_empty_channel_named(df):
    bad = df.assign(z=np.nan, w=np.nan)
    _check(bad, r"Target columns 'z', 'w' have no observed value \(all NaN\)",
           target_cols=["x", "z", "w"], empty_channels="raise")
    vf = validate_frame(bad, time_col="t", id_col="id", target_cols=["x", "z"])  # "keep"
    assert np.isnan(vf.values[:, 1]).all()
    _check(df, "empty_channels must be", empty_channels="drop")


def test_inferred_targets_named_in_one_warning():
    n = 12
    df = pd.DataFrame({
        "row": np.arange(n),                                   # a row number
        "id": np.repeat([0, 1, 2], 4),
        "t": np.tile([0.0, 1.0, 2.0, 3.0], 3),
        "x": np.linspace(0.0, 1.0, n),
        "count": np.tile([1, 2, 2, 3], 3),                     # integer measurement: kept quiet
        "key": np.random.default_rng(0).permutation(n) * 7,  # distinct ints, shuffled
        "flag": np.arange(n) % 2 == 0,
        "hr": [f"{v:.1f}" for v in np.linspace(60, 90, n)],    # numbers stored as strings
        "note": list("abcdefghijkl"),
    })
    with pytest.warns(UserWarning) as record:
        vf = validate_frame(df, time_col="t", id_col="id")
    assert len(record) == 1
    message = str(record[0].message)
    assert vf.target_cols == ["row", "x", "count", "key", "flag"]
    assert re.search(r"Left out \(not numeric\): 'hr' \(\w+: numbers stored as strings; convert "
                     r"with pandas.to_numeric\); 'note' \(\w+\)\.", message), message
    assert "'row' (int64: increasing by one on every row, like a row number)" in message
    assert "'key' (int64: a distinct value on every row, like a row id)" in message
    assert "'flag' (bool: a flag, modelled as 0.0 / 1.0)" in message
    assert "'count'" not in message.split("Left out")[1] and "'x' (" not in message
    assert record[0].filename == __file__  # points at the caller
    # explicit targets, or the targets of a fitted model: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_frame(df, time_col="t", id_col="id", target_cols=["x", "count"])
        validate_frame(df, time_col="t", id_col="id", expected_targets=["x", "count"])


@pytest.mark.parametrize("big", [1e300,     # its square overflows
                                 1.7e308])  # the sum overflows as well
def test_values_too_large_to_standardise(df, big):
    bad = df.copy()
    bad.loc[["r3", "r4"], "y"] = big
    _check(bad, r"Target column 'y' has values too large to standardise \(their mean or variance "
                r"overflows float64\), e.g. 1.*e\+30\d at row 'r[34]'", target_cols=["x", "y"])
    ok = df.copy()
    ok.loc["r3", "y"] = 1e100  # large, but its column's moments are finite
    assert validate_frame(ok, time_col="t", id_col="id", target_cols=["x", "y"]).n_series == 3


def test_scaler_refuses_overflowing_moments():
    from latentode.data import ChannelScaler, channel_moments

    x = np.array([[1e300, 1.0], [-1e300, np.nan], [np.nan, 3.0]])
    count, mean, var = channel_moments(x)
    assert count.tolist() == [2, 2] and mean.tolist() == [0.0, 2.0]
    assert np.isinf(var[0]) and var[1] == 1.0
    with pytest.raises(ValueError, match=r"channel\(s\) \[0\] overflows float64"):
        ChannelScaler().fit(x)
    s = ChannelScaler().fit(x[:, 1:])
    assert s.mean_.tolist() == [2.0] and s.scale_.tolist() == [1.0]


def test_scaled_overflow_names_column_and_row(df):
    from latentode.data import ChannelScaler, TimeEncoder, pad_frame

    fit = validate_frame(df, time_col="t", id_col="id", target_cols=["x", "y"])
    enc = TimeEncoder().fit(fit.times, groups=fit.series_codes)
    scaler = ChannelScaler().fit(fit.values)
    new = df.copy()
    new.loc["r6", "x"] = 1e45  # fine in float64, beyond float32 once standardised
    vf = validate_frame(new, time_col="t", id_col="id", expected_targets=["x", "y"])
    with pytest.raises(ValueError, match=r"Column 'x' has a value at row 'r6' .* overflows "
                                         r"float32"):
        pad_frame(vf, enc, scaler)
    far = df.copy()
    far.loc["r2", "t"] = 1e45
    vf = validate_frame(far, time_col="t", id_col="id", expected_targets=["x", "y"])
    with pytest.raises(ValueError, match=r"Column 't' has a time at row 'r2'"):
        pad_frame(vf, enc, scaler)
    assert pad_frame(vf, enc, scaler, dtype=np.float64).n_series == 3  # float64 holds it


def test_missing_id_column_suggests_none(df):
    _check(df.drop(columns="id"), r"Unknown id column 'id'.*pass id_col=None")
