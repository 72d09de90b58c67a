"""Hide observed values of a long DataFrame to score reconstructions of them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._frames import check_frame, require_column, target_columns

__all__ = ["hide_values"]


def hide_values(
    df: pd.DataFrame,
    fraction: float = 0.2,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
    keep_first: bool = True,
    random_state: int | np.random.Generator | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Hide a random fraction of the observed values of each series.

    Each observed entry ``(row, column)`` is hidden independently with probability
    ``fraction`` (one uniform draw per entry of ``df[columns]``, row-major, from
    ``numpy.random.default_rng(random_state)``; rows with the same id and time, which a
    model takes as one time point, all use the draws of the first of them, so an entry is
    hidden in all of them or in none); with ``keep_first`` the first row of each
    series that has an observed value in ``columns`` (first in ``df``'s order) keeps all its
    values, so that no series is left without an observation to condition on. This is the
    protocol of the demo and the benchmarks: a model conditions on the returned frame and is
    scored on the hidden entries.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame: one row per ``(id, time)``, NaN where a column is not observed. Not
        modified.
    fraction : float, default 0.2
        Probability, in ``[0, 1]``, that an observed value is hidden.
    columns : sequence of str, optional
        Columns whose values may be hidden; default: every column but ``id_col`` and
        ``time_col``.
    id_col : str, default "id"
        Series identifier column.
    time_col : str or None, default "t"
        Time column (never hidden, excluded from the default ``columns``).
    keep_first : bool, default True
        Never hide a value of a series' first row with an observed value (nor of rows at the
        same id and time).
    random_state : int, numpy.random.Generator or None
        Source of the draws (an int gives reproducible masks).

    Returns
    -------
    conditioned : pandas.DataFrame
        A copy of ``df`` with the hidden values replaced by NaN.
    hidden : numpy.ndarray of bool, shape (n_rows, n_columns)
        The hidden entries, columns in ``columns`` order; only observed entries are hidden.

    Raises
    ------
    ValueError
        If ``fraction`` is outside ``[0, 1]``, a column is absent or the id column is missing
        a value.

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 1, 1, 2, 2], "t": [0.0, 1.0, 2.0, 0.0, 1.0],
    ...                    "x": [1.0, 2.0, 3.0, np.nan, 5.0]})
    >>> cond, hidden = hide_values(df, 1.0)  # all but each series' first observed row
    >>> cond["x"].tolist()
    [1.0, nan, nan, nan, 5.0]
    >>> hidden.ravel().tolist()
    [False, True, True, False, False]
    """
    check_frame(df, "df")
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}.")
    ids = require_column(df, id_col, "df", "id")
    exclude = [id_col] if time_col is None else [id_col, time_col]
    cols = target_columns(df, columns, "df", exclude)
    rng = np.random.default_rng(random_state)
    observed = df[cols].notna().to_numpy()
    draws = rng.random(observed.shape)
    mates = _same_time_rows(df, ids, time_col)
    if mates is not None:  # duplicate (id, time) rows share their first row's draws
        draws = draws[mates]
    hidden = observed & (draws < fraction)
    if keep_first:
        rows = np.flatnonzero(observed.any(axis=1))
        kept = rows[~ids.iloc[rows].duplicated().to_numpy()]
        if mates is not None:
            kept = np.flatnonzero(np.isin(mates, mates[kept]))
        hidden[kept] = False
    conditioned = df.copy()
    conditioned[cols] = conditioned[cols].mask(hidden)
    return conditioned, hidden


def _same_time_rows(df: pd.DataFrame, ids: pd.Series, time_col: str | None) -> np.ndarray | None:
    """For each row, the position of the first row with its ``(id, time)``; None when every
    row has its own (or without a time column). Duplicate rows are one time point to a model
    (the estimators average them), so an entry is hidden in all of them or in none."""
    if time_col is None or time_col not in df.columns:
        return None
    key = pd.DataFrame({"i": ids.to_numpy(), "t": df[time_col].to_numpy()})
    if not key.duplicated().any():
        return None
    codes = key.groupby(["i", "t"], sort=False, dropna=False).ngroup().to_numpy()
    first = np.full(codes.max() + 1, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return first[codes]
