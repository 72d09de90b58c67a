"""Tests for latentode.data.padding: padded layout, row mapping back, subsets, query padding."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from latentode.data import (
    ChannelScaler,
    TimeEncoder,
    pad_frame,
    pad_query_times,
    subset,
    to_padded,
    validate_frame,
)


def _random_long_frame(seed: int, n_series: int = 7, n_channels: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n_series)
    ids = np.repeat(np.arange(n_series) * 10, lengths)
    t = rng.permutation(np.arange(len(ids), dtype=float)) * 0.37  # distinct times
    x = rng.normal(size=(len(ids), n_channels))
    x[rng.random(x.shape) < 0.4] = np.nan
    x[np.arange(len(ids)), rng.integers(0, n_channels, len(ids))] = rng.normal(size=len(ids))
    df = pd.DataFrame(x, columns=[f"c{j}" for j in range(n_channels)])
    df.insert(0, "t", t)
    df.insert(0, "id", ids)
    df.index = rng.permutation(len(df)) + 1000
    return df.iloc[rng.permutation(len(df))]


def test_to_padded_layout():
    codes = np.array([1, 0, 1, 2, 1])
    times = np.array([0.5, 0.0, 0.2, 3.0, 0.9])
    values = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, np.nan], [4.0, 5.0], [6.0, 7.0]])
    p = to_padded(codes, times, values, 4, series_ids=np.array(["a", "b", "c", "d"]))
    assert p.times.shape == (4, 3) and p.values.shape == (4, 3, 2) and p.mask.shape == (4, 3, 2)
    assert p.lengths.tolist() == [1, 3, 1, 0]
    assert p.values.dtype == np.float32 and p.mask.dtype == bool and p.times.dtype == np.float64
    np.testing.assert_array_equal(p.times, [[0.0, 0.0, 0.0], [0.2, 0.5, 0.9], [3.0, 3.0, 3.0],
                                            [0.0, 0.0, 0.0]])  # padded with the last valid time
    np.testing.assert_array_equal(p.values[1], [[0.0, 0.0], [1.0, 0.0], [6.0, 7.0]])
    np.testing.assert_array_equal(p.mask[1], [[False, False], [True, False], [True, True]])
    assert not p.mask[0, 1:].any() and (p.values[0, 1:] == 0).all()
    assert p.slot_series.tolist() == [1, 0, 1, 2, 1]
    assert p.slot_position.tolist() == [1, 0, 0, 0, 2]
    assert p.series_ids.tolist() == ["a", "b", "c", "d"]
    assert (p.n_series, p.max_length, p.n_channels, len(p)) == (4, 3, 2, 4)


def test_drop_unobserved():
    codes = np.array([0, 0, 0])
    times = np.array([0.0, 1.0, 2.0])
    values = np.array([[1.0], [np.nan], [2.0]])
    p = to_padded(codes, times, values, 1, drop_unobserved=True, dtype=np.float64)
    assert p.lengths.tolist() == [2]
    np.testing.assert_array_equal(p.times, [[0.0, 2.0]])
    assert p.slot_series.tolist() == [0, -1, 0] and p.slot_position.tolist() == [0, -1, 1]
    out = p.gather_slots(p.values)
    np.testing.assert_array_equal(out, [[1.0], [np.nan], [2.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_round_trip_recovers_every_row(seed):
    df = _random_long_frame(seed)
    before = df.copy(deep=True)
    vf = validate_frame(df, time_col="t", id_col="id")
    enc = TimeEncoder().fit(vf.times, groups=vf.series_codes)
    scaler = ChannelScaler().fit(vf.values)
    p = pad_frame(vf, enc, scaler, drop_unobserved=False, dtype=np.float64)
    # values and mask go back to each original row, in the caller's order
    rows = scaler.inverse_transform(
        np.where(p.gather_slots(p.mask), p.gather_slots(p.values), np.nan))[vf.row_slot]
    expected = df[vf.target_cols].to_numpy()
    np.testing.assert_array_equal(np.isnan(rows), np.isnan(expected))
    np.testing.assert_allclose(rows, expected, rtol=1e-12, atol=1e-12)
    # times, ids as well
    t_rows = enc.inverse_transform(p.gather_slots(p.times))[vf.row_slot]
    np.testing.assert_allclose(t_rows, df["t"].to_numpy(), rtol=1e-12, atol=1e-12)
    assert p.series_ids[p.slot_series[vf.row_slot]].tolist() == df["id"].tolist()
    # each padded row is ascending and padded with its last time
    valid = np.arange(p.max_length)[None, :] < p.lengths[:, None]
    assert np.all(np.diff(p.times, axis=1) >= 0)
    last = p.times[np.arange(p.n_series), p.lengths - 1]
    np.testing.assert_array_equal(np.where(valid, p.times, last[:, None]), p.times)
    assert p.mask.sum() == df[vf.target_cols].notna().to_numpy().sum()
    pd.testing.assert_frame_equal(df, before)


def test_duplicates_rows_read_merged_slot():
    df = pd.DataFrame({"id": [0, 0, 1, 0], "t": [1.0, 0.0, 0.0, 1.0], "x": [2.0, 1.0, 5.0, 4.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vf = validate_frame(df, time_col="t", id_col="id")
    p = to_padded(vf.series_codes, np.asarray(vf.times), vf.values, vf.n_series)
    np.testing.assert_array_equal(p.gather_slots(p.values)[vf.row_slot, 0], [3.0, 1.0, 5.0, 3.0])


def test_subset_trims_and_remaps():
    codes = np.array([0, 0, 0, 1, 2, 2])
    times = np.array([0.0, 1.0, 2.0, 0.5, 0.1, 0.2])
    values = np.arange(6.0)[:, None]
    p = to_padded(codes, times, values, 3, series_ids=np.array([7, 8, 9]))
    s = subset(p, [2, 1])
    assert s.times.shape == (2, 2) and s.lengths.tolist() == [2, 1]
    assert s.series_ids.tolist() == [9, 8]
    np.testing.assert_array_equal(s.times, [[0.1, 0.2], [0.5, 0.5]])
    np.testing.assert_array_equal(s.values[:, :, 0], [[4.0, 5.0], [3.0, 0.0]])
    assert s.slot_series.tolist() == [-1, -1, -1, 1, 0, 0]
    np.testing.assert_array_equal(s.gather_slots(s.values)[:, 0],
                                  [np.nan, np.nan, np.nan, 3.0, 4.0, 5.0])
    m = subset(p, np.array([False, True, False]))
    assert m.series_ids.tolist() == [8] and m.times.shape == (1, 1)


def test_to_padded_input_checks():
    with pytest.raises(ValueError, match="finite"):
        to_padded([0], [np.nan], [[1.0]], 1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        to_padded([1], [0.0], [[1.0]], 1)
    with pytest.raises(ValueError, match="values must have shape"):
        to_padded([0, 0], [0.0, 1.0], [1.0, 2.0], 1)
    with pytest.raises(ValueError, match="infinite"):
        to_padded([0], [0.0], [[np.inf]], 1)
    with pytest.raises(ValueError, match="series_ids"):
        to_padded([0], [0.0], [[1.0]], 1, series_ids=[1, 2])
    with pytest.raises(ValueError, match="integers"):
        to_padded([0.0], [0.0], [[1.0]], 1)


def test_pad_query_times_dedup_and_mapping():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 4, size=40)
    codes[codes == 3] = 2  # series 3 has no query
    times = rng.integers(0, 6, size=40) * 0.5  # many repeats
    q = pad_query_times(codes, times, 4)
    # every row finds its own time
    np.testing.assert_array_equal(q.times[codes, q.row_position], times)
    # distinct, ascending, padded with the last valid one
    for b in range(4):
        expected = np.unique(times[codes == b])
        assert q.lengths[b] == len(expected)
        np.testing.assert_array_equal(q.times[b, :q.lengths[b]], expected)
        pad = expected[-1] if len(expected) else 0.0
        assert (q.times[b, q.lengths[b]:] == pad).all()
    assert q.times.shape[1] == q.lengths.max()
    with pytest.raises(ValueError, match="finite"):
        pad_query_times([0], [np.inf], 1)


def test_lex_order_matches_lexsort():
    from latentode.data._sort import lex_order

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 5, size=300)
    key = rng.integers(0, 7, size=300).astype(float)  # many ties: stability matters
    np.testing.assert_array_equal(lex_order(codes, key), np.lexsort((key, codes)))
    order = np.lexsort((key, codes))
    np.testing.assert_array_equal(lex_order(codes[order], key[order]), np.arange(300))
    assert lex_order(np.array([0]), np.array([1.0])).tolist() == [0]


def test_predict_flow_maps_query_results_to_caller_rows():
    """Conditioning on observed slots, querying every row, reading results back per row."""
    df = _random_long_frame(5)
    df = pd.concat([df, df.iloc[:4].assign(c0=np.nan, c1=np.nan, c2=np.nan)])  # dup (id, t)
    df.index = np.arange(len(df))[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vf = validate_frame(df, time_col="t", id_col="id")
    enc = TimeEncoder().fit(vf.times, groups=vf.series_codes)
    cond = pad_frame(vf, enc, ChannelScaler().fit(vf.values))
    assert cond.mask[np.arange(cond.n_series), cond.lengths - 1].any(axis=1).all()
    q = pad_query_times(vf.series_codes, enc.transform(vf.times), vf.n_series)
    # a fake model "prediction": the query time itself, read back per caller row
    pred = q.times
    per_row = pred[vf.row_series_codes, q.row_position[vf.row_slot]]
    np.testing.assert_allclose(enc.inverse_transform(per_row), df["t"].to_numpy(), rtol=1e-12)
    codes = vf.lookup_series(df["id"])
    np.testing.assert_array_equal(codes, vf.row_series_codes)
    assert vf.lookup_series([-5]).tolist() == [-1]


def test_observation_rates_pool_counts_over_windows():
    from latentode.data import observation_rates, to_padded

    # series 0: times 0, 1, 3 (span 3); series 1: times 2, 2.5 (span 0.5); channel 1 seen twice
    codes = np.array([0, 0, 0, 1, 1])
    times = np.array([0.0, 1.0, 3.0, 2.0, 2.5])
    values = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, np.nan], [4.0, 6.0], [5.0, np.nan]])
    padded = to_padded(codes, times, values, n_series=2)
    np.testing.assert_allclose(observation_rates(padded), [5 / 3.5, 2 / 3.5])
    one = to_padded(np.array([0]), np.array([1.0]), np.array([[np.nan, 2.0]]), n_series=1)
    np.testing.assert_allclose(observation_rates(one), [1.0, 1.0])  # span 0, count floor 1


def test_observation_spacing_per_channel():
    """Mean spacing where the channel is observed; 1 for a channel never observed or only in
    windows of length 0."""
    from latentode.data import PaddedSeries, observation_spacing

    t = np.array([[0.0, 1.0, 4.0], [2.0, 2.0, 2.0], [0.0, 3.0, 3.0]])
    m = np.zeros((3, 3, 3))
    m[0, :, 0] = 1  # channel 0: 3 values over 4, and 1 over 3 in the last series
    m[2, 0, 0] = 1
    m[1, 0, 1] = 1  # channel 1: only in a series of span 0; channel 2: never
    none = np.zeros(0, np.int64)
    ps = PaddedSeries(t, np.zeros_like(m), m, np.array([3, 1, 2]), np.arange(3), none, none)
    np.testing.assert_allclose(observation_spacing(ps), [(4 + 3) / 4, 1.0, 1.0])
