"""Tests for latentode.data.loader: batches cover every series once, trimmed, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentode.data import Batch, batch_indices, iterate_batches, split_series, to_padded


@pytest.fixture
def padded():
    rng = np.random.default_rng(0)
    n_series = 23
    lengths = rng.integers(1, 15, size=n_series)
    codes = np.repeat(np.arange(n_series), lengths)
    times = rng.random(len(codes))
    values = rng.normal(size=(len(codes), 2))
    values[rng.random(values.shape) < 0.3] = np.nan
    # the series id encodes the series' length, so each batch row can be traced back
    return to_padded(codes, times, values, n_series, series_ids=np.arange(n_series) + 100)


def _trace(padded, batch: Batch) -> np.ndarray:
    """Series index of each batch row, found by matching its times exactly."""
    out = []
    for row, n in zip(batch.times.numpy(), batch.lengths.numpy()):
        hit = [i for i in range(padded.n_series)
               if padded.lengths[i] == n and np.array_equal(padded.times[i, :n], row[:n])]
        assert len(hit) == 1
        out.append(hit[0])
    return np.array(out)


@pytest.mark.parametrize("shuffle,bucket", [(False, False), (True, False), (True, True),
                                            (False, True)])
def test_each_series_once_and_trimmed(padded, shuffle, bucket):
    batches = list(iterate_batches(padded, 5, shuffle=shuffle, bucket=bucket,
                                   generator=np.random.default_rng(1), dtype=torch.float64))
    sizes = [b.batch_size for b in batches]
    assert sorted(sizes) == [3, 5, 5, 5, 5]  # bucket + shuffle also shuffles the batch order
    seen = np.concatenate([_trace(padded, b) for b in batches])
    assert sorted(seen.tolist()) == list(range(padded.n_series))
    for b, idx in zip(batches, np.split(seen, np.cumsum(sizes)[:-1])):
        width = int(padded.lengths[idx].max())
        assert b.times.shape == (len(idx), width) and b.values.shape == (len(idx), width, 2)
        assert b.times.dtype == torch.float64 and b.mask.dtype == torch.float64
        assert b.lengths.dtype == torch.long
        np.testing.assert_array_equal(b.times.numpy(), padded.times[idx, :width])
        np.testing.assert_array_equal(b.values.numpy(), padded.values[idx, :width])
        np.testing.assert_array_equal(b.mask.numpy(), padded.mask[idx, :width].astype(float))
        np.testing.assert_array_equal(b.lengths.numpy(), padded.lengths[idx])
    if not shuffle and not bucket:
        np.testing.assert_array_equal(seen, np.arange(padded.n_series))


def test_default_dtype_float32(padded):
    b = next(iterate_batches(padded, 4))
    assert b.times.dtype == b.values.dtype == b.mask.dtype == torch.float32
    assert b.times.device.type == "cpu" and b.n_channels == 2


@pytest.mark.parametrize("make", [lambda: torch.Generator().manual_seed(7),
                                  lambda: np.random.default_rng(7)])
def test_shuffle_reproducible_and_changes_per_epoch(padded, make):
    def epochs(gen, n=3):
        return [np.concatenate(batch_indices(padded.lengths, 4, shuffle=True, generator=gen))
                for _ in range(n)]

    a, b = epochs(make()), epochs(make())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])  # a new permutation each epoch
    assert not np.array_equal(a[0], np.arange(padded.n_series))
    # the batches themselves match for the same seed
    t1 = [x.times for x in iterate_batches(padded, 4, shuffle=True, generator=make())]
    t2 = [x.times for x in iterate_batches(padded, 4, shuffle=True, generator=make())]
    assert all(torch.equal(x, y) for x, y in zip(t1, t2))


def test_int_seed_gives_same_order_every_call(padded):
    a = batch_indices(padded.lengths, 6, shuffle=True, generator=3)
    b = batch_indices(padded.lengths, 6, shuffle=True, generator=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bucket_reduces_padding_and_stays_random():
    lengths = np.random.default_rng(0).integers(1, 200, size=400)

    def padding(batches):
        return sum(len(i) * lengths[i].max() - lengths[i].sum() for i in batches)

    rng = np.random.default_rng(5)
    plain = batch_indices(lengths, 8, shuffle=True, generator=np.random.default_rng(5))
    e1 = batch_indices(lengths, 8, shuffle=True, generator=rng, bucket=True)
    e2 = batch_indices(lengths, 8, shuffle=True, generator=rng, bucket=True)
    assert padding(e1) < 0.5 * padding(plain)
    assert sorted(np.concatenate(e1).tolist()) == list(range(400))
    assert not np.array_equal(np.concatenate(e1), np.concatenate(e2))
    ordered = batch_indices(lengths, 8, bucket=True)
    assert np.all(np.diff(lengths[np.concatenate(ordered)]) >= 0)


def test_invalid_arguments(padded):
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(padded, 0)
    with pytest.raises(ValueError, match="floating"):
        iterate_batches(padded, 2, dtype=torch.int64)
    with pytest.raises(TypeError, match="generator"):
        batch_indices(padded.lengths, 2, shuffle=True, generator="seed")
    empty = to_padded([0, 0], [0.0, 1.0], [[1.0], [2.0]], 3, series_ids=np.array([5, 6, 7]))
    with pytest.raises(ValueError, match=r"2 series have no time point \(ids \[6, 7\]"):
        iterate_batches(empty, 2)  # raised eagerly, before iterating


def test_split_series():
    train, val = split_series(10, 0.3, np.random.default_rng(0))
    assert len(val) == 3 and len(train) == 7
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(10))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    t2, v2 = split_series(10, 0.3, np.random.default_rng(0))
    np.testing.assert_array_equal(val, v2)
    assert split_series(10, 0.0, 0)[1].size == 0 and split_series(10, 0.0, 0)[0].size == 10
    assert len(split_series(10, 0.01, 0)[1]) == 1  # any positive fraction: >= 1 series
    assert len(split_series(3, 0.9, 0)[0]) == 1  # training keeps >= 1 series
    train, val = split_series(1, 0.5, 0)  # a single series cannot be split
    assert train.tolist() == [0] and val.size == 0
    for bad in (1.0, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match="fraction"):
            split_series(5, bad, 0)
    with pytest.raises(ValueError, match="n_series"):
        split_series(0, 0.2, 0)
