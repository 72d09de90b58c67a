"""Data layer: long pandas frames <-> padded model arrays, time and channel scaling, batching.

Fit (what :class:`~latentode.LatentODERegressor` does)::

    vf = validate_frame(df, time_col="t", id_col="id", empty_series="drop",
                        empty_channels="raise")          # sorted, merged slots
    enc = TimeEncoder(unit="h").fit(vf.times, groups=vf.series_codes)  # model time
    scaler = ChannelScaler().fit(vf.values)                            # standardised values
    padded = pad_frame(vf, enc, scaler)          # (B, N, C) numpy, observed time points only
    train, val = split_series(vf.n_series, 0.2, rng)  # or validation series given apart:
    # held, _ = validate_holdout(df_val, vf); val_padded = pad_frame(held, enc, scaler)
    for batch in iterate_batches(subset(padded, train), 64, shuffle=True, generator=g):
        ...                                      # torch Batch (model time, standardised)

Predict at every row of ``df`` (rows with NaN targets included)::

    vf = validate_frame(df, time_col="t", id_col="id", expected_targets=target_cols)
    cond = pad_frame(vf, enc, scaler)                                  # conditioning data
    query = pad_query_times(vf.series_codes, enc.transform(vf.times), vf.n_series)
    # model.predict(cond rows, query.times[rows], query.lengths[rows]) -> pred (B, M, C)
    per_row = pred[vf.row_series_codes, query.row_position[vf.row_slot]]  # caller's row order
    per_row = scaler.inverse_transform(per_row)

Query rows of another frame (e.g. forecast times) use ``vf.lookup_series(ids)`` for their codes.
The estimator does all of this through :mod:`latentode.data.query`::

    query = build_query(df, vf, enc, grid=(2.0, 20))    # or times=..., or neither: df's rows
    plan = plan_query(query.series_codes, query.times, cond.lengths)
    # latentode._predict.predict_packed(model, iterate_batches(subset(cond, plan.series), ...),
    #                                   plan.times, plan.lengths) -> packed (S, P, C)
    per_row = plan.gather_rows(packed)                  # (S, n_query_rows, C), NaN if unconditioned
"""

from ..batch import Batch
from .holdout import validate_holdout
from .loader import batch_indices, iterate_batches, split_series
from .padding import (
    PaddedQuery,
    PaddedSeries,
    observation_rates,
    observation_spacing,
    pad_frame,
    pad_query_times,
    subset,
    to_padded,
)
from .query import (
    Query,
    QueryPlan,
    build_query,
    encode_query,
    forecast_origins,
    horizon_delta,
    horizon_step,
    plan_query,
    query_frame,
    rows_query,
)
from .scaling import ChannelScaler, channel_fences, channel_moments
from .static import StaticEncoder, check_static_cols, series_groups, series_static
from .time import TimeEncoder
from .validation import ValidatedFrame, validate_frame

__all__ = [
    "Batch",
    "ChannelScaler",
    "PaddedQuery",
    "PaddedSeries",
    "Query",
    "QueryPlan",
    "StaticEncoder",
    "TimeEncoder",
    "ValidatedFrame",
    "batch_indices",
    "build_query",
    "channel_fences",
    "channel_moments",
    "encode_query",
    "forecast_origins",
    "horizon_delta",
    "horizon_step",
    "iterate_batches",
    "observation_rates",
    "observation_spacing",
    "pad_frame",
    "pad_query_times",
    "plan_query",
    "query_frame",
    "rows_query",
    "check_static_cols",
    "series_groups",
    "series_static",
    "split_series",
    "subset",
    "to_padded",
    "validate_frame",
    "validate_holdout",
]
