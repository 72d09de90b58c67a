"""Static covariates: one value per series (age, sex, treatment arm, ICU type...).

A static column of a long frame holds one value per series, repeated on its rows or recorded on
some of them only (rows where it is missing are ignored): :func:`series_static` reads it and
raises a ValueError naming the series, the column and two of its values when they differ within
a series. :class:`StaticEncoder` turns the per-series values into the numbers the model reads:

* a **numeric** column (any numeric dtype but bool) is standardised with the mean and standard
  deviation over the training series (a constant column gets scale 1);
* a **categorical** column (object, string, category or bool dtype) is one-hot encoded over the
  categories seen in training, in sorted order; an unknown category at prediction time is a
  ValueError naming the series;
* a **missing** value (the series has no value in the column) is encoded as 0 (the training
  mean, or no category) and, for a column that had missing values in training, flagged by an
  extra indicator column ``<col>_missing``. A column without missing values in training has no
  indicator; a missing value there at prediction time is encoded as 0 with a warning.

Encoded covariates never enter the likelihood: the model conditions on them (see
:class:`latentode.nn.LatentODE`, ``n_static``) but does not reconstruct them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .loader import mixed_groups
from .validation import ValidatedFrame, _fmt, _plain, external_stacklevel

__all__ = ["StaticEncoder", "series_static", "check_static_cols", "series_groups"]

_KINDS = ("numeric", "categorical")


def check_static_cols(
    static_cols: Sequence[Hashable] | None, df: pd.DataFrame, *, time_col: Hashable,
    id_col: Hashable | None, target_cols: Sequence[Hashable] = (), fitted: bool = False,
) -> list[Hashable]:
    """The static columns as a list, checked: present, distinct, not the id, time or a target.

    ``fitted=True`` words a missing column as one the model was fitted with (prediction).

    Raises
    ------
    ValueError
        Naming the offending column.
    """
    if static_cols is None:
        return []
    if isinstance(static_cols, (str, bytes)) or not isinstance(
            static_cols, (Sequence, pd.Index, np.ndarray)):
        raise ValueError(f"static_cols must be a list of column names, got {static_cols!r}.")
    cols = list(static_cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        what = (f"Missing static column{'s' if len(missing) > 1 else ''} {_fmt(missing)} that "
                "the model was fitted with" if fitted else
                f"Unknown static column{'s' if len(missing) > 1 else ''} {_fmt(missing)}")
        raise ValueError(f"{what}; available columns: {_fmt(list(df.columns), 30)}.")
    dup = sorted({repr(c) for c in cols if cols.count(c) > 1})
    if dup:
        raise ValueError(f"Static column(s) listed more than once: {', '.join(dup)}.")
    roles = {time_col: "the time column", **({id_col: "the id column"} if id_col is not None
                                             else {})}
    for c in cols:
        if c in roles:
            raise ValueError(f"Static column {c!r} is {roles[c]}.")
        if c in list(target_cols):
            raise ValueError(f"Column {c!r} is both a static column and a target column; a "
                             "static covariate conditions the model and is not reconstructed. "
                             "Leave it out of target_cols.")
        if int((df.columns == c).sum()) > 1:
            raise ValueError(f"The DataFrame has several columns named {c!r}.")
    return cols


def series_static(df: pd.DataFrame, vf: ValidatedFrame,
                  static_cols: Sequence[Hashable]) -> pd.DataFrame:
    """One value per series and static column, in the order of ``vf.series_ids``.

    Parameters
    ----------
    df : pandas.DataFrame
        The caller's long frame (not modified).
    vf : ValidatedFrame
        ``df`` validated; its series (``vf.series_ids``) are the rows of the result. Rows of
        series left out of ``vf`` (``dropped_series``) are ignored.
    static_cols : sequence of Hashable
        Checked static columns (:func:`check_static_cols`).

    Returns
    -------
    pandas.DataFrame
        ``(n_series, len(static_cols))``, indexed by position (row ``s`` is
        ``vf.series_ids[s]``), the columns' dtypes kept; missing where a series has no value.

    Raises
    ------
    ValueError
        If a series has two different non-missing values in a static column (naming the
        series, the column and the values), or a numeric static value is infinite.
    """
    out = _one_value_per_series(
        df, vf, list(static_cols), "Static column",
        "A static covariate has one value per series (rows where it is missing are ignored); "
        "model a quantity that changes over time as a target column instead.")
    cols = list(static_cols)
    for c in cols:  # keep the caller's dtype (reindex may turn a category into object)
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            out[c] = pd.Categorical(out[c], categories=df[c].cat.categories)
        if _kind(df[c]) == "numeric":
            values = out[c].to_numpy(dtype=np.float64, na_value=np.nan)
            inf = np.isinf(values)
            if inf.any():
                sid = _plain(vf.series_ids[int(np.flatnonzero(inf)[0])])
                raise ValueError(f"Static column {c!r} has an infinite value for series "
                                 f"{sid!r}; use NaN for a missing value.")
    return out


def _one_value_per_series(df: pd.DataFrame, vf: ValidatedFrame, cols: list[Hashable],
                          what: str, hint: str) -> pd.DataFrame:
    """The value of each column of ``cols`` per series of ``vf`` (``(n_series, len(cols))``,
    missing where a series has none; rows where a value is missing are ignored); a ValueError
    starting with ``what`` (e.g. "Static column") and ending with ``hint`` when two values
    differ within a series."""
    if vf.id_col is None:
        codes = np.zeros(len(df), dtype=np.int64)
    else:
        codes = vf.lookup_series(df[vf.id_col])
    keep = codes >= 0
    sub = df.loc[keep, cols] if not keep.all() else df[cols]
    groups = sub.groupby(codes[keep], sort=True, observed=True)
    counts = groups.nunique(dropna=True)
    for c in cols:
        bad = counts.index[counts[c].to_numpy() > 1] if len(counts) else []
        if len(bad):
            code = int(bad[0])
            values = pd.unique(sub[c][codes[keep] == code].dropna())[:2]
            raise ValueError(
                f"{what} {c!r} varies within series{_where(vf, code)}: "
                f"{_fmt([_plain(v) for v in values])}"
                f"{f' and {len(bad) - 1} more series' if len(bad) > 1 else ''}. {hint}"
            )
    return groups.first().reindex(range(vf.n_series))


def _where(vf: ValidatedFrame, code: int) -> str:
    """" 'id' (column 'id')" naming series ``code`` of ``vf``, or "" without an id column."""
    if vf.id_col is None:
        return ""
    return f" {_plain(vf.series_ids[code])!r} (column {vf.id_col!r})"


def series_groups(df: pd.DataFrame, vf: ValidatedFrame, group_col: Hashable, *,
                  target_cols: Sequence[Hashable] = (),
                  strata: np.ndarray | None = None) -> np.ndarray:
    """The group of each series of ``vf``, read from the column ``group_col`` of ``df``.

    A group column marks related series (several stays of one patient, augmented copies of a
    series) that a validation split keeps on one side (:func:`latentode.data.split_series`,
    ``groups``). Like a static column, it holds one value per series, given on every row of
    the series or on some rows only (rows where it is missing are ignored).

    Parameters
    ----------
    df : pandas.DataFrame
        The caller's long frame (not modified).
    vf : ValidatedFrame
        ``df`` validated; its series (``vf.series_ids``) are the entries of the result. Rows of
        series left out of ``vf`` (``dropped_series``) are ignored.
    group_col : Hashable
        The group column; it may be the id column (every series its own group) or a static
        column, not the time column or a target column.
    target_cols : sequence of Hashable, default=()
        The target columns (refused as the group column).
    strata : numpy.ndarray, optional
        ``(n_series,)`` strata that the split keeps apart (the classifier's labelled and
        unlabelled series): every group must lie within one.

    Returns
    -------
    numpy.ndarray
        ``(n_series,)`` int64 group codes, ``0..n_groups - 1`` in order of first appearance
        among the series of ``vf``.

    Raises
    ------
    ValueError
        If ``group_col`` is not a column of ``df`` (or names several), is the time column or a
        target column, varies within a series (naming the series, the column and two values),
        or has no value for a series (naming the series), or, with ``strata``, if a group holds
        series of two strata (naming the group and two of its series).
    """
    if isinstance(group_col, (list, set, np.ndarray, pd.Index)):
        raise ValueError(f"group_col must be one column name, got {group_col!r}.")
    if group_col not in df.columns:
        raise ValueError(f"Unknown group column {group_col!r}; available columns: "
                         f"{_fmt(list(df.columns), 30)}.")
    if int((df.columns == group_col).sum()) > 1:
        raise ValueError(f"The DataFrame has several columns named {group_col!r}.")
    if group_col == vf.time_col:
        raise ValueError(f"Group column {group_col!r} is the time column.")
    if group_col in list(target_cols):
        raise ValueError(f"Column {group_col!r} is both the group column and a target column; "
                         "leave it out of target_cols.")
    values = _one_value_per_series(
        df, vf, [group_col], "Group column",
        "A group column has one value per series: series that share it are kept on the same "
        "side of the validation split.")[group_col]
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise ValueError(
            f"Group column {group_col!r} has no value for series"
            f"{_where(vf, int(missing[0])) or ' (the whole frame)'}"
            f"{f' and {len(missing) - 1} more series' if len(missing) > 1 else ''}; give "
            "every series a group (its own id for a series without relatives)."
        )
    codes, labels = pd.factorize(values, sort=False)
    if strata is not None:
        mixed = mixed_groups(codes, strata)
        if len(mixed):
            members = np.flatnonzero(codes == mixed[0])
            other = members[np.asarray(strata)[members] != np.asarray(strata)[members[0]]][0]
            raise ValueError(
                f"Group {_plain(labels[mixed[0]])!r} (column {group_col!r}) holds series "
                f"{_plain(vf.series_ids[members[0]])!r} and {_plain(vf.series_ids[other])!r}, "
                "which the validation split keeps apart (labelled and unlabelled series are "
                f"split on their own){f' ({len(mixed)} such groups)' if len(mixed) > 1 else ''};"
                " a group must hold series of one kind."
            )
    return np.asarray(codes, dtype=np.int64)


def _kind(col: pd.Series) -> str:
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype) or (
            isinstance(dtype, pd.CategoricalDtype)):
        return "categorical"
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError(f"Static column {col.name!r} holds complex numbers.")
    return "numeric"


def _json_scalar(v: Any, column: Hashable) -> Any:
    v = _plain(v)
    if isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
        return v
    raise ValueError(
        f"Static column {column!r} has the category {v!r} ({type(v).__name__}): categories "
        "must be strings, numbers or booleans, which can be saved with the model. Convert the "
        "column, e.g. a date to a number (days since an origin) or to a string."
    )


class StaticEncoder:
    """Encode per-series static covariates: standardise numbers, one-hot categories.

    See the module docstring for the rules (numeric vs categorical columns, missing values,
    unknown categories). ``fit`` takes the per-series frame of :func:`series_static`.

    Attributes
    ----------
    columns : list
        The static columns, in order.
    kinds : list of {"numeric", "categorical"}
    means, scales : list of float or None
        Standardisation of numeric columns (None for categorical ones).
    categories : list of list or None
        The training categories of categorical columns, sorted (None for numeric ones).
    indicators : list of bool
        Whether a column has a missing-value indicator (it had missing values in training).

    Examples
    --------
    >>> frame = pd.DataFrame({"age": [50.0, 70.0, np.nan], "sex": ["f", "m", "f"]})
    >>> enc = StaticEncoder().fit(frame)
    >>> enc.feature_names
    ['age', 'age_missing', 'sex=f', 'sex=m']
    >>> enc.transform(frame).tolist()
    [[-1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]
    """

    def __init__(self) -> None:
        self.columns: list[Hashable] = []
        self.kinds: list[str] = []
        self.means: list[float | None] = []
        self.scales: list[float | None] = []
        self.categories: list[list[Any] | None] = []
        self.indicators: list[bool] = []

    @property
    def width(self) -> int:
        """Number of encoded features."""
        return sum((1 if k == "numeric" else len(c)) + int(i)
                   for k, c, i in zip(self.kinds, self.categories, self.indicators))

    @property
    def feature_names(self) -> list[str]:
        """Names of the encoded features: ``col``, ``col=category``, ``col_missing``."""
        names = []
        for col, kind, cats, ind in zip(self.columns, self.kinds, self.categories,
                                        self.indicators):
            names += [str(col)] if kind == "numeric" else [f"{col}={c}" for c in cats]
            if ind:
                names.append(f"{col}_missing")
        return names

    def fit(self, frame: pd.DataFrame) -> StaticEncoder:
        """Learn the encoding from one row per training series.

        Raises
        ------
        ValueError
            If a column has no value for any series, or its categories cannot be saved
            (not strings, numbers or booleans).
        """
        self.__init__()
        for c in frame.columns:
            col = frame[c]
            missing = np.asarray(col.isna())
            if missing.all():
                raise ValueError(f"Static column {c!r} has no value for any series.")
            kind = _kind(col)
            self.columns.append(c)
            self.kinds.append(kind)
            self.indicators.append(bool(missing.any()))
            if kind == "numeric":
                x = col.to_numpy(dtype=np.float64, na_value=np.nan)[~missing]
                with np.errstate(over="ignore", invalid="ignore"):
                    mean, std = float(np.mean(x)), float(np.std(x))
                if not (math.isfinite(mean) and math.isfinite(std)):
                    raise ValueError(f"Static column {c!r} has values too large to "
                                     "standardise; rescale it.")
                self.means.append(mean)
                self.scales.append(std if std > 0 else 1.0)
                self.categories.append(None)
            else:
                values = pd.unique(col[~missing].to_numpy(dtype=object))
                try:
                    values = sorted(values)
                except TypeError:  # mutually incomparable: order of first appearance
                    pass
                self.means.append(None)
                self.scales.append(None)
                self.categories.append([_json_scalar(v, c) for v in values])
        return self

    def transform(self, frame: pd.DataFrame, series_ids: Any = None,
                  id_col: Hashable | None = None) -> np.ndarray:
        """Encode one row per series; ``series_ids`` / ``id_col`` name series in messages.

        Returns
        -------
        numpy.ndarray
            ``(n_series, width)`` float64.

        Raises
        ------
        ValueError
            If a column is missing, a category was not seen in training, or a standardised
            value overflows float32.
        """
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise ValueError(f"Missing static column(s) {_fmt(absent)} that the model was "
                             "fitted with.")
        ids = np.arange(len(frame)) if series_ids is None else np.asarray(series_ids)
        where = "" if id_col is None else f" (column {id_col!r})"
        parts = []
        for col, kind, mean, scale, cats, ind in zip(self.columns, self.kinds, self.means,
                                                     self.scales, self.categories,
                                                     self.indicators):
            values = frame[col]
            missing = np.asarray(values.isna())
            if kind == "numeric":
                x = values.to_numpy(dtype=np.float64, na_value=np.nan) if pd.api.types.\
                    is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
                        values.dtype) else None
                if x is None:
                    raise ValueError(f"Static column {col!r} was numeric in fit and is "
                                     f"{values.dtype} now.")
                with np.errstate(over="ignore", invalid="ignore"):
                    z = (x - mean) / scale
                bad = ~missing & ~(np.abs(z) <= np.finfo(np.float32).max)
                if bad.any():
                    sid = _plain(ids[int(np.flatnonzero(bad)[0])])
                    raise ValueError(f"Static column {col!r} has a value for series {sid!r}"
                                     f"{where} that overflows float32 once standardised.")
                block = np.where(missing, 0.0, z)[:, None]
            else:
                index = pd.Index(cats, dtype=object)
                codes = index.get_indexer(pd.Index(values.to_numpy(dtype=object)))
                unknown = (codes < 0) & ~missing
                if unknown.any():
                    i = int(np.flatnonzero(unknown)[0])
                    raise ValueError(
                        f"Static column {col!r} has the category "
                        f"{_plain(values.to_numpy(dtype=object)[i])!r} for series "
                        f"{_plain(ids[i])!r}{where}, which fit never saw (known: "
                        f"{_fmt(cats, 10)})."
                    )
                block = np.zeros((len(frame), len(cats)))
                rows = np.flatnonzero(~missing)
                block[rows, codes[rows]] = 1.0
            if ind:
                block = np.concatenate([block, missing[:, None].astype(np.float64)], axis=1)
            elif missing.any():
                warnings.warn(
                    f"Static column {col!r} has no value for {int(missing.sum())} series "
                    f"({_fmt([_plain(i) for i in ids[missing]])}{where}); fit saw no missing "
                    "value there, so they are encoded as "
                    f"{'the training mean' if kind == 'numeric' else 'no category'}.",
                    UserWarning, stacklevel=external_stacklevel(),
                )
            parts.append(block)
        if not parts:
            return np.zeros((len(frame), 0))
        return np.concatenate(parts, axis=1)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (see :meth:`from_dict`)."""
        return {"columns": list(self.columns), "kinds": list(self.kinds),
                "means": list(self.means), "scales": list(self.scales),
                "categories": [None if c is None else list(c) for c in self.categories],
                "indicators": list(self.indicators)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> StaticEncoder:
        """Rebuild from :meth:`to_dict`'s output, checking every field.

        Raises
        ------
        ValueError
            Naming the field that is malformed.
        """
        keys = ("columns", "kinds", "means", "scales", "categories", "indicators")
        if not isinstance(state, dict) or set(state) != set(keys):
            raise ValueError(f"a static encoder needs exactly the keys {list(keys)}")
        n = len(state["columns"]) if isinstance(state["columns"], list) else -1
        for k in keys:
            if not isinstance(state[k], list) or len(state[k]) != n:
                raise ValueError(f"{k} must be a list of {max(n, 0)} entries")
        out = cls()
        for col, kind, mean, scale, cats, ind in zip(*(state[k] for k in keys)):
            if not isinstance(col, (str, int, float)) or isinstance(col, bool):
                raise ValueError(f"column labels must be strings or numbers, got {col!r}")
            if kind not in _KINDS:
                raise ValueError(f"kinds must be one of {_KINDS}, got {kind!r}")
            if not isinstance(ind, bool):
                raise ValueError(f"indicators must be true or false, got {ind!r}")
            if kind == "numeric":
                ok = (isinstance(mean, (int, float)) and not isinstance(mean, bool)
                      and math.isfinite(mean) and isinstance(scale, (int, float))
                      and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0
                      and cats is None)
                if not ok:
                    raise ValueError(f"numeric column {col!r} needs a finite mean, a positive "
                                     "scale and no categories")
            else:
                ok = (mean is None and scale is None and isinstance(cats, list) and cats
                      and all(isinstance(c, (str, int, float, bool)) for c in cats)
                      and len({(type(c), c) for c in cats}) == len(cats))
                if not ok:
                    raise ValueError(f"categorical column {col!r} needs a non-empty list of "
                                     "distinct categories and no mean or scale")
            out.columns.append(col)
            out.kinds.append(kind)
            out.means.append(None if mean is None else float(mean))
            out.scales.append(None if scale is None else float(scale))
            out.categories.append(None if cats is None else list(cats))
            out.indicators.append(ind)
        if len(set(out.columns)) != len(out.columns):
            raise ValueError(f"duplicate columns {out.columns}")
        return out
