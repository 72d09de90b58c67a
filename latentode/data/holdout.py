"""Validation series given apart from the training frame (``fit(..., validation_data=df_val)``).

:func:`validate_holdout` checks a second long frame against the column roles of a validated
training frame (the same time, id, target and static columns, the same kind of time) with the
rules of :func:`~latentode.data.validate_frame`, and returns it validated with its static
values. The caller then encodes it with the time encoder, scaler and static encoder fitted on
the training frame only::

    vf = validate_frame(df, time_col="t", id_col="id", empty_series="drop")
    held, static = validate_holdout(df_val, vf, static_cols=[])
    enc = TimeEncoder().fit(vf.times, groups=vf.series_codes)
    scaler = ChannelScaler().fit(vf.values)                 # the training frame's values only
    val = pad_frame(held, enc, scaler)                      # the validation series

Every error names the frame (``"validation_data: ..."``) and, as for the training frame, the
column, series or row at fault.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import pandas as pd

from .static import check_static_cols, series_static
from .validation import (
    ValidatedFrame,
    dropped_series_message,
    external_stacklevel,
    validate_frame,
)


def validate_holdout(
    df: pd.DataFrame,
    fitted: ValidatedFrame,
    *,
    static_cols: Sequence[Hashable] = (),
    name: str = "validation_data",
) -> tuple[ValidatedFrame, pd.DataFrame | None]:
    """Check held-out series (a validation frame) against the roles of the training frame.

    Parameters
    ----------
    df : pandas.DataFrame
        Long format, with the training frame's time, id (unless it is None), target and
        static columns; other columns are ignored. Never modified. Its series ids are its
        own: an id also present in the training frame names another series.
    fitted : ValidatedFrame
        The training frame, validated: its ``time_col``, ``id_col``, ``target_cols`` and
        ``time_kind`` (and naive or aware datetimes) are required of ``df``.
    static_cols : sequence of Hashable, default=()
        The training frame's checked static columns (:func:`check_static_cols`).
    name : str, default="validation_data"
        How messages name ``df``.

    Returns
    -------
    frame : ValidatedFrame
        ``df`` validated (``empty_series="drop"``: series without an observed target value
        are left out, with one warning naming them).
    static : pandas.DataFrame or None
        One row of static values per series of ``frame`` (:func:`series_static`), None
        without static columns.

    Raises
    ------
    TypeError
        If ``df`` is not a DataFrame.
    ValueError
        Prefixed with ``name``: every error of :func:`validate_frame` (missing time, id or
        target columns, NaN / inf times, every series without an observed value, ...) and
        of :func:`series_static` (a missing static column, a value varying within a series),
        or a time column of another kind than the training frame's (numeric / datetime, naive
        / timezone-aware). Aware datetimes in another timezone are accepted (the same instants,
        as in prediction).

    Warns
    -----
    UserWarning
        Prefixed with ``name``: once if series without any observed target value were left
        out, once if duplicate ``(id, time)`` rows were merged.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame (long format, the columns of df), "
                        f"got {type(df).__name__}.")
    statics = list(static_cols)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = validate_frame(
                df, time_col=fitted.time_col, id_col=fitted.id_col,
                expected_targets=list(fitted.target_cols), empty_series="drop",
            )
            static = None
            if statics:
                check_static_cols(statics, df, time_col=fitted.time_col, id_col=fitted.id_col,
                                  target_cols=list(fitted.target_cols), fitted=True)
                static = series_static(df, frame, statics)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    if frame.time_kind != fitted.time_kind or (frame.tz is None) != (fitted.tz is None):
        def kind(f: ValidatedFrame) -> str:
            return f.time_kind + ("" if f.tz is None else f" ({f.tz})")

        raise ValueError(f"{name}: its time column {fitted.time_col!r} is {kind(frame)}, the "
                         f"training frame's is {kind(fitted)}; give both the same kind.")
    level = external_stacklevel()
    for w in caught:
        warnings.warn(f"{name}: {w.message}", w.category, stacklevel=level)
    if len(frame.dropped_series):
        warnings.warn(f"{name}: {dropped_series_message(frame, 'the validation series')}.",
                      UserWarning, stacklevel=level)
    return frame, static
