"""Mini-batching of :class:`~latentode.data.PaddedSeries` into torch :class:`Batch` objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..batch import Batch
from .padding import PaddedSeries

__all__ = ["iterate_batches", "batch_indices", "split_series"]

#: anything that can drive a shuffle
RandomLike = torch.Generator | np.random.Generator | np.random.RandomState | int | None

_NUMPY_DTYPE = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}

#: with ``bucket=True``, series are sorted by length within pools of this many batches
_BUCKET_POOL = 50


def _permutation(n: int, generator: RandomLike) -> np.ndarray:
    """A random permutation of ``range(n)`` drawn from ``generator``."""
    if isinstance(generator, torch.Generator):
        return torch.randperm(n, generator=generator, device=generator.device).cpu().numpy()
    if isinstance(generator, (np.random.Generator, np.random.RandomState)):
        return np.asarray(generator.permutation(n), dtype=np.int64)
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator).permutation(n)
    raise TypeError(
        "generator must be a torch.Generator, a numpy Generator / RandomState, an int seed or "
        f"None, got {type(generator).__name__}."
    )


def batch_indices(
    lengths: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: RandomLike = None,
    bucket: bool = False,
) -> list[np.ndarray]:
    """Split series into mini-batches of indices; every series appears in exactly one batch.

    Parameters
    ----------
    lengths : array-like of int, shape (B,)
        Number of time points of each series (used by ``bucket``).
    batch_size : int
        Maximum number of series per batch (the last batch may be smaller).
    shuffle : bool, default=False
        Random order (a new one on each call, drawn from ``generator``). Without shuffle,
        batches are consecutive slices ``[0, batch_size), [batch_size, 2 * batch_size), ...``.
    generator : torch.Generator, numpy Generator / RandomState, int or None
        Randomness for ``shuffle`` and ``bucket``; an int seeds a fresh numpy generator (same
        order every call); None draws fresh OS entropy.
    bucket : bool, default=False
        Group series of similar lengths into the same batch to reduce padding. With
        ``shuffle``, series are shuffled, sorted by length within random pools of
        ``50 * batch_size`` series, cut into batches, and the batch order is shuffled (so the
        grouping differs every epoch). Without ``shuffle``, series are sorted by length
        (stable) and cut in order.

    Returns
    -------
    list of numpy.ndarray
        int64 series indices of each batch.
    """
    lengths = np.asarray(lengths)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    n = len(lengths)
    order = _permutation(n, generator) if shuffle else np.arange(n, dtype=np.int64)
    if bucket:
        pool = batch_size * _BUCKET_POOL
        if shuffle:
            # stable sort by (pool, length) keeps the random order among equal lengths
            pool_id = np.arange(n) // pool
            order = order[np.lexsort((lengths[order], pool_id))]
        else:
            order = np.argsort(lengths, kind="stable")
    batches = [order[i:i + batch_size].astype(np.int64) for i in range(0, n, batch_size)]
    if bucket and shuffle and len(batches) > 1:
        batches = [batches[i] for i in _permutation(len(batches), generator)]
    return batches


def iterate_batches(
    padded: PaddedSeries,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: RandomLike = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    bucket: bool = False,
) -> Iterator[Batch]:
    """Yield torch mini-batches covering every series of ``padded`` exactly once.

    Parameters
    ----------
    padded : PaddedSeries
        Model-ready series (model times, standardised values); every length must be >= 1.
    batch_size : int
        Maximum number of series per batch.
    shuffle : bool, default=False
        Shuffle series (see :func:`batch_indices`); the permutation is drawn when iteration
        starts, so calling this once per epoch gives a new order per epoch.
    generator : torch.Generator, numpy Generator / RandomState, int or None
        Randomness for ``shuffle`` / ``bucket``; a seeded generator makes the order
        reproducible.
    device : torch.device or str, default="cpu"
        Where to put the tensors (moved once per batch; pinned memory for CUDA).
    dtype : torch.dtype, default=torch.float32
        Floating dtype of ``times``, ``values`` and ``mask``.
    bucket : bool, default=False
        Group similar lengths together (see :func:`batch_indices`).

    Yields
    ------
    Batch
        ``times (b, n)``, ``values (b, n, C)``, ``mask (b, n, C)``, ``lengths (b,)`` where
        ``n`` is the longest series of that batch, with the per-series ``static``, ``labels``
        and ``weights`` that ``padded`` carries (else None). Without ``shuffle`` and ``bucket`` the
        batches hold series ``[0, batch_size), [batch_size, 2 * batch_size), ...`` in order.

    Raises
    ------
    ValueError
        If ``batch_size < 1`` or a series has no time point (checked before the first batch).
    """
    if not isinstance(padded, PaddedSeries):
        raise TypeError(f"padded must be a PaddedSeries, got {type(padded).__name__}.")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype}.")
    empty = np.flatnonzero(padded.lengths < 1)
    if len(empty):
        raise ValueError(
            f"{len(empty)} series have no time point (ids {padded.series_ids[empty[:5]].tolist()}"
            f"{', ...' if len(empty) > 5 else ''}); drop them before batching."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    return _iterate(padded, int(batch_size), shuffle, generator, torch.device(device), dtype,
                    bucket)


def _iterate(padded: PaddedSeries, batch_size: int, shuffle: bool, generator: RandomLike,
             device: torch.device, dtype: torch.dtype, bucket: bool) -> Iterator[Batch]:
    np_dtype = _NUMPY_DTYPE.get(dtype, np.float32)
    pin = device.type == "cuda"

    def move(arr: np.ndarray, floating: bool) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(arr))
        if pin:
            x = x.pin_memory()
        return x.to(device=device, dtype=dtype if floating else None, non_blocking=pin)

    for idx in batch_indices(padded.lengths, batch_size, shuffle=shuffle, generator=generator,
                             bucket=bucket):
        lengths = padded.lengths[idx]
        width = int(lengths.max())
        yield Batch(
            times=move(padded.times[idx, :width].astype(np_dtype, copy=False), True),
            values=move(padded.values[idx, :width].astype(np_dtype, copy=False), True),
            mask=move(padded.mask[idx, :width].astype(np_dtype), True),
            lengths=move(lengths.astype(np.int64, copy=False), False),
            static=None if padded.static is None else move(
                padded.static[idx].astype(np_dtype, copy=False), True),
            labels=None if padded.labels is None else move(padded.labels[idx], False),
            weights=None if padded.weights is None else move(
                padded.weights[idx].astype(np_dtype, copy=False), True),
        )


def split_series(
    n_series: int,
    fraction: float,
    rng: np.random.Generator | np.random.RandomState | int | None = None,
    *,
    strata: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random train / validation split of series indices (validation is split *by series*).

    Parameters
    ----------
    n_series : int
        Number of series (>= 1).
    fraction : float
        Share of series for validation, in ``[0, 1)``.
    rng : numpy Generator / RandomState, int or None
        Randomness of the split.
    strata : numpy.ndarray, optional
        ``(n_series,)`` group of each series (e.g. labelled or not): each group is split on its
        own, in sorted order of the groups, with the rules below, so that each keeps its share
        of validation series. A single group (or None) is the plain split.
    groups : numpy.ndarray, optional
        ``(n_series,)`` labels (integers or any values :func:`numpy.unique` can sort) of
        related series (several stays of one patient, augmented copies of a series): series
        that share a label are kept on the same side of the split. The rules below then apply
        to the groups instead of the series: the groups, in order of first appearance, are
        split as ``n_groups`` series would be, and each series follows its group. With
        ``strata`` too, every group must lie within one stratum (else a ValueError naming the
        group), and each stratum's groups are split on their own. With every group of a
        single series, the result is the split without ``groups``, index for index.

    Returns
    -------
    train_idx, val_idx : numpy.ndarray
        Sorted int64 indices, disjoint, together ``range(n_series)``.

    Raises
    ------
    ValueError
        For an invalid ``n_series`` or ``fraction``, ``strata`` or ``groups`` of another
        shape than ``(n_series,)``, or a group whose series lie in several strata.

    Notes
    -----
    The validation size is ``round(fraction * n_series)``, clipped so that both sides keep at
    least one series: any ``fraction > 0`` gives at least one validation series when
    ``n_series >= 2``, and at most ``n_series - 1``. With a single series, or ``fraction == 0``,
    the validation set is empty (callers then monitor the training loss). With ``strata``, the
    same holds within each group. With ``groups``, the same holds for the number of *groups*:
    ``round(fraction * n_groups)`` groups go to validation (at least one when ``fraction > 0``
    and there are two or more groups, and never all of them), so the share of validation
    *series* follows ``fraction`` only as far as the groups' sizes allow.
    """
    if isinstance(n_series, bool) or not isinstance(n_series, (int, np.integer)) or n_series < 1:
        raise ValueError(f"n_series must be an integer >= 1, got {n_series!r}.")
    if isinstance(fraction, bool) or not (
            isinstance(fraction, (int, float, np.floating, np.integer)) and 0 <= fraction < 1):
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}.")
    codes = None if groups is None else _group_codes(groups, n_series)
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != (n_series,):
            raise ValueError(f"strata must hold one group per series ({n_series}), got shape "
                             f"{strata.shape}.")
        kinds = np.unique(strata)
        if len(kinds) > 1:
            if codes is not None:
                mixed = mixed_groups(codes, strata)
                if len(mixed):
                    label = np.asarray(groups)[np.flatnonzero(codes == mixed[0])[0]]
                    raise ValueError(
                        f"Group {label.item() if hasattr(label, 'item') else label!r} holds "
                        f"series of several strata ({len(mixed)} such group"
                        f"{'s' if len(mixed) > 1 else ''}); each stratum is split on its own, "
                        "so a group must lie within one."
                    )
            if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
                rng = np.random.default_rng(rng)
            train_parts, val_parts = [], []
            for g in kinds:
                members = np.flatnonzero(strata == g).astype(np.int64)
                tr, va = split_series(len(members), fraction, rng,
                                      groups=None if codes is None else codes[members])
                train_parts.append(members[tr])
                val_parts.append(members[va])
            return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))
    if codes is not None:
        _, val_groups = split_series(int(codes.max()) + 1, fraction, rng)
        is_val = np.isin(codes, val_groups)
        return (np.flatnonzero(~is_val).astype(np.int64),
                np.flatnonzero(is_val).astype(np.int64))
    n_val = int(round(float(fraction) * n_series))
    if fraction > 0 and n_series >= 2:
        n_val = min(max(n_val, 1), n_series - 1)
    else:
        n_val = 0
    if n_val == 0:
        return np.arange(n_series, dtype=np.int64), np.empty(0, dtype=np.int64)
    if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
        rng = np.random.default_rng(rng)
    perm = np.asarray(rng.permutation(n_series), dtype=np.int64)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def mixed_groups(codes: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """The groups whose series lie in several strata.

    Parameters
    ----------
    codes : numpy.ndarray
        ``(n_series,)`` int group codes ``0..n_groups - 1``.
    strata : numpy.ndarray
        ``(n_series,)`` stratum of each series (any values :func:`numpy.unique` can sort).

    Returns
    -------
    numpy.ndarray
        Sorted int64 codes of the groups holding series of two or more strata (empty if none).
    """
    codes = np.asarray(codes, dtype=np.int64)
    if not len(codes):
        return np.empty(0, dtype=np.int64)
    kinds, stratum = np.unique(np.asarray(strata), return_inverse=True)
    per_group = np.zeros((int(codes.max()) + 1, len(kinds)), dtype=bool)
    per_group[codes, stratum.reshape(-1)] = True
    return np.flatnonzero(per_group.sum(axis=1) > 1).astype(np.int64)


def _group_codes(groups: np.ndarray, n_series: int) -> np.ndarray:
    """``groups`` as int64 codes ``0..n_groups - 1`` in order of first appearance."""
    groups = np.asarray(groups)
    if groups.shape != (n_series,):
        raise ValueError(f"groups must hold one label per series ({n_series}), got shape "
                         f"{groups.shape}.")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first), dtype=np.int64)
    return rank[inverse.reshape(-1)]
