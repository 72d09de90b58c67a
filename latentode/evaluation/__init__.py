"""Evaluation of predictions of long-format series: hiding values, naive baselines, scores.

numpy / pandas / scipy (scikit-learn for the scorers; no torch): it sits beside the estimator
and works on the long DataFrames that :class:`~latentode.LatentODERegressor` reads and returns,
so the demo, the benchmarks, the tutorials and any user compare models and baselines the same way.

Protocol
--------
hide_values
    Hide a random fraction of the observed values of each series (keeping its first row):
    condition on the rest, score the hidden ones.

Baselines (per series and column, from the visible values)
-----------------------------------------------------------
locf
    Last observation carried forward (first one carried backward).
linear_interpolation
    Linear in time, constant beyond the first / last visible value.
channel_mean
    The series' mean of the column.

Scores
------
mse, per_feature_mse
    Mean squared error, pooled or per column, optionally of standardised values.
paper_mse, paper_mse_frame, paper_mse_shares
    The Latent ODE paper's MSE (per series and feature, then over features and series), on
    padded arrays or long frames, and each feature's share of it.
sample_crps
    Mean CRPS of predictive samples (:meth:`~latentode.LatentODERegressor.sample`).
coverage
    Fraction of values inside their central predictive interval (quantile columns of
    ``predict`` / ``extrapolate``).
gap_breakdown
    Mean squared error of several predictions by channel, by position relative to the
    conditioning observations of the channel (inside, before, after, none) and by bucket of
    the gap to the nearest one: where a model loses to the baselines.
make_hidden_scorer
    A scikit-learn scorer (``scoring=`` of ``cross_val_score``, ``GridSearchCV``) of a fitted
    estimator's error on values it hides from each test fold (interpolation or forecast).
make_series_scorer
    A scikit-learn classification scorer (``"roc_auc"``, ``"accuracy"``, ...) of the
    classifier's predictions per series, with ``y`` reduced to one label per series.
long_to_dense
    Rows of a long frame as a padded ``(n_series, n_times, n_columns)`` array.
crps_samples, crps_gaussian, interval_coverage
    The array-level scores of :mod:`latentode.uncertainty`, re-exported.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from latentode.evaluation import hide_values, linear_interpolation, mse
>>> df = pd.DataFrame({"id": [1] * 5, "t": [0.0, 1.0, 2.0, 3.0, 4.0],
...                    "x": [0.0, 1.0, 2.0, 3.0, 4.0]})
>>> cond, hidden = hide_values(df, 0.5, random_state=5)
>>> hidden.ravel().tolist()
[False, False, False, True, True]
>>> mse(df, linear_interpolation(cond), hidden)  # x(3) = x(4) = 2 carried beyond the end
2.5
"""

from latentode.uncertainty import crps_gaussian, crps_samples, interval_coverage

from .baselines import channel_mean, linear_interpolation, locf
from .breakdown import gap_breakdown
from .masking import hide_values
from .metrics import (
    coverage,
    long_to_dense,
    mse,
    paper_mse,
    paper_mse_frame,
    paper_mse_shares,
    per_feature_mse,
    sample_crps,
)
from .scoring import make_hidden_scorer, make_series_scorer

__all__ = [
    "hide_values",
    "locf",
    "linear_interpolation",
    "channel_mean",
    "mse",
    "per_feature_mse",
    "paper_mse",
    "paper_mse_frame",
    "paper_mse_shares",
    "long_to_dense",
    "sample_crps",
    "coverage",
    "gap_breakdown",
    "make_hidden_scorer",
    "make_series_scorer",
    "crps_samples",
    "crps_gaussian",
    "interval_coverage",
]
