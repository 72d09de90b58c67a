"""Stable ordering by (series code, time) shared by validation and padding."""

from __future__ import annotations

import numpy as np


def lex_order(codes: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Stable permutation sorting by ``codes`` then ``key`` (same result as ``np.lexsort``).

    Already-sorted input (the common case) is detected in O(n) and returns ``arange``.
    """
    n = len(codes)
    if n < 2:
        return np.arange(n, dtype=np.int64)
    same = codes[1:] == codes[:-1]
    if np.all((codes[1:] > codes[:-1]) | (same & (key[1:] >= key[:-1]))):
        return np.arange(n, dtype=np.int64)
    by_key = np.argsort(key, kind="stable")
    return by_key[np.argsort(codes[by_key], kind="stable")].astype(np.int64, copy=False)
