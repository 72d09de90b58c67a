"""scikit-learn scorers of the estimators on long frames: hidden values, labels of series.

scikit-learn's built-in scorers compare ``predict(X)`` with a ``y`` row by row. The regressor
has no ``y``, so ``cross_val_score(est, df, scoring="neg_mean_squared_error")`` scores
nothing (NaN). :func:`make_hidden_scorer` builds a scorer that makes its own targets from the
test fold: it hides observed values (:func:`~latentode.evaluation.hide_values`) or the end of
each series, lets the fitted estimator predict them from the rest, and returns minus their
mean squared error (:func:`~latentode.evaluation.mse`), so that greater is better, as
scikit-learn's ``scoring=`` expects.

The classifier predicts one label per series while a cross-validation's ``y`` holds one per
row, so ``scoring="roc_auc"`` cannot compare them. :func:`make_series_scorer` reduces ``y``
to one label per series, as the classifier's ``fit`` does, and applies scikit-learn's scorer
to the predictions per series.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline

from ._frames import check_frame
from .masking import hide_values
from .metrics import mse, paper_mse_frame

__all__ = ["make_hidden_scorer", "HiddenValueScorer", "HIDDEN_SCORER_TASKS",
           "HIDDEN_SCORER_METRICS", "make_series_scorer", "SeriesScorer"]

#: what a hidden-value scorer asks the estimator to predict
HIDDEN_SCORER_TASKS: tuple[str, ...] = ("interpolation", "forecast")
#: how it scores the predictions (minus the error: greater is better)
HIDDEN_SCORER_METRICS: tuple[str, ...] = ("mse", "paper_mse")
_SERIES = "__latentode_series__"  # the series key of a model fitted with id_col=None


def _final_step(estimator: Any) -> Any:
    """The estimator at the end of ``estimator``'s Pipelines (nested ones too), whose fitted
    attributes a scorer reads; ``estimator`` itself when it is not a Pipeline."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def _through_pipelines(estimator: Any, X: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """``(final step, X transformed by every step before it)``: what a Pipeline would hand its
    last step, for the methods a Pipeline does not expose (``extrapolate``)."""
    while isinstance(estimator, Pipeline):
        if len(estimator.steps) > 1:
            X = estimator[:-1].transform(X)
        estimator = estimator.steps[-1][1]
    return estimator, X


class HiddenValueScorer:
    """The callable :func:`make_hidden_scorer` returns (see there); picklable, so it goes to
    the workers of ``GridSearchCV(n_jobs=k)``."""

    def __init__(self, fraction: float, task: str, metric: str, standardize: bool,
                 random_state: int | None) -> None:
        self.fraction = fraction
        self.task = task
        self.metric = metric
        self.standardize = standardize
        self.random_state = random_state

    def __repr__(self) -> str:
        return (f"make_hidden_scorer(fraction={self.fraction!r}, task={self.task!r}, "
                f"metric={self.metric!r}, standardize={self.standardize!r}, "
                f"random_state={self.random_state!r})")

    def __call__(self, estimator: Any, X: pd.DataFrame, y: Any = None) -> float:
        """Minus the error of ``estimator``'s predictions of the values of ``X`` it hides.

        Parameters
        ----------
        estimator : fitted LatentODERegressor, or a Pipeline ending in one
            Its fitted ``target_cols_``, ``id_col_``, ``time_col_`` and ``scaler_`` say which
            columns to hide and how to standardise them.
        X : pandas.DataFrame
            Long frame of the series to score (the test fold). Not modified.
        y : ignored
            Present for scikit-learn's scorer signature.

        Returns
        -------
        float
            ``-error`` (greater is better).
        """
        check_frame(X, "X")
        final = _final_step(estimator)
        cols = getattr(final, "target_cols_", None)
        if cols is None:
            raise ValueError(f"the hidden-value scorer needs a fitted estimator; "
                             f"{type(final).__name__} has no target_cols_ (not fitted?).")
        if hasattr(final, "classes_"):
            raise ValueError(f"the hidden-value scorer scores a regressor's predictions of "
                             f"values; {type(final).__name__} predicts labels.")
        cols = list(cols)
        id_col, time_col = final.id_col_, final.time_col_
        for c in ([] if id_col is None else [id_col]) + [time_col, *cols]:
            if c not in X.columns:
                raise ValueError(f"column {c!r}, which the estimator was fitted with, is not in "
                                 f"X (columns: {list(X.columns)}).")
        loc = scale = None
        if self.standardize:
            loc = dict(zip(cols, np.asarray(final.scaler_.mean_, dtype=np.float64).tolist()))
            scale = dict(zip(cols, np.asarray(final.scaler_.scale_, dtype=np.float64).tolist()))
        key = id_col if id_col is not None else _SERIES
        work = X if id_col is not None else X.assign(**{_SERIES: 0})
        if self.task == "interpolation":
            cond, scored = hide_values(work, self.fraction, columns=cols, id_col=key,
                                       time_col=time_col, random_state=self.random_state)
            if not scored.any():
                raise ValueError(
                    f"the hidden-value scorer found nothing to hide in X: of its "
                    f"{int(X[cols].notna().to_numpy().sum())} observed values of {cols}, "
                    f"fraction={self.fraction!r} hid none (a series' first observed row is "
                    "never hidden); give more observed values or a larger fraction.")
            truth = work
            pred = estimator.predict(cond if id_col is not None else cond.drop(columns=_SERIES))
        else:
            past, future = _forecast_split(work, cols, key, time_col, self.fraction)
            if not future.any():
                raise ValueError(
                    f"the hidden-value scorer found nothing to forecast in X: no series has an "
                    f"observed value of {cols} both before and in the last "
                    f"{self.fraction:g} of its observed time span.")
            truth = work[future]
            scored = truth[cols].notna().to_numpy()
            query = truth[[time_col] if id_col is None else [id_col, time_col]]
            model, history = _through_pipelines(estimator, X[past])
            pred = model.extrapolate(history, times=query if id_col is not None
                                     else query[time_col].to_numpy())
        values = pred[cols]
        if self.metric == "mse":
            err = mse(truth, values, scored, columns=cols, loc=loc, scale=scale, id_col=key,
                      time_col=time_col)
        else:
            t, p = truth[cols], values
            if self.standardize:
                t = (t - pd.Series(loc)) / pd.Series(scale)
                p = (p - pd.Series(loc)) / pd.Series(scale)
            t = pd.concat([truth[[key, time_col]], t], axis=1)
            err = paper_mse_frame(t, p.to_numpy(np.float64), scored, columns=cols, id_col=key,
                                  time_col=time_col)
        return -float(err)


def _forecast_split(df: pd.DataFrame, cols: list[Any], id_col: Any, time_col: Any,
                    fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows to condition on and rows to forecast: per series, its observed time span
    ``[first, last]`` (rows with an observed value of ``cols``) is cut at
    ``first + (1 - fraction) * (last - first)``; the rows before the cut are the history,
    the later rows of a series with an observed value before the cut are forecast."""
    observed = df[cols].notna().any(axis=1).to_numpy()
    times = df[time_col].where(observed)
    ids = df[id_col]
    first = times.groupby(ids, sort=False).transform("min")
    last = times.groupby(ids, sort=False).transform("max")
    cut = first + (last - first) * (1.0 - fraction)
    before = (df[time_col] < cut).to_numpy()
    has_past = ids.isin(ids[before & observed]).to_numpy()
    return before, ~before & has_past & cut.notna().to_numpy()


def make_hidden_scorer(
    fraction: float = 0.3,
    *,
    task: str = "interpolation",
    metric: str = "mse",
    standardize: bool = True,
    random_state: int | None = 0,
) -> HiddenValueScorer:
    """A scikit-learn scorer of the error on values it hides from a fitted Latent ODE.

    The estimators have no ``y``, so ``scoring="neg_mean_squared_error"`` cannot score them;
    this scorer makes its targets from the frame it is given (a test fold), never modifying
    it, and returns minus the error (greater is better), for ``cross_val_score``,
    ``cross_validate`` and ``GridSearchCV`` (``scoring=make_hidden_scorer(...)``):

    * ``task="interpolation"``: :func:`~latentode.evaluation.hide_values` hides each observed
      target value with probability ``fraction`` (never in a series' first observed row), the
      estimator's ``predict`` fills them in from the rest;
    * ``task="forecast"``: each series' observed time span ``[first, last]`` is cut at
      ``first + (1 - fraction) * (last - first)``; the estimator's ``extrapolate`` conditions
      on the rows before the cut and forecasts the observed values from the cut on (a series
      with no observed value before the cut is not scored). ``random_state`` is not used.

    The targets, the id and the time column are the fitted estimator's (``target_cols_``,
    ``id_col_``, ``time_col_``; of the last step of a ``Pipeline``).

    Parameters
    ----------
    fraction : float, default 0.3
        Interpolation: the probability that an observed value is hidden, in ``(0, 1]``.
        Forecast: the share of each series' observed time span to forecast, in ``(0, 1)``.
    task : {"interpolation", "forecast"}, default "interpolation"
        What is hidden (above).
    metric : {"mse", "paper_mse"}, default "mse"
        :func:`~latentode.evaluation.mse` (every scored value weighs alike) or
        :func:`~latentode.evaluation.paper_mse_frame` (per series and channel, then averaged).
    standardize : bool, default True
        Score values standardised by the estimator's training mean and standard deviation of
        each channel (``scaler_``), so that channels in different units weigh alike (the
        z-scored MSE of the benchmarks); False: in the data's units.
    random_state : int or None, default 0
        Seed of the hidden values: with an int every call hides the same values of the same
        frame, so candidates of a grid search are scored on the same entries; None draws
        new ones at every call.

    Returns
    -------
    HiddenValueScorer
        ``scorer(estimator, X, y=None) -> float``: minus the error (``y`` is ignored). It
        raises a ``ValueError`` when ``X`` leaves nothing to hide (or to forecast), lacks a
        fitted column, or when the estimator is not fitted or is a classifier.

    Raises
    ------
    ValueError
        For a ``fraction``, ``task`` or ``metric`` outside the values above.

    Examples
    --------
    >>> from latentode.evaluation import make_hidden_scorer
    >>> make_hidden_scorer(0.2, task="forecast")  # doctest: +NORMALIZE_WHITESPACE
    make_hidden_scorer(fraction=0.2, task='forecast', metric='mse', standardize=True,
                       random_state=0)

    In a cross-validation over series (``groups``: the id of each row)::

        from sklearn.model_selection import GroupKFold, cross_val_score
        cross_val_score(est, df, groups=df["id"], cv=GroupKFold(3),
                        scoring=make_hidden_scorer(0.3))   # minus the z-scored MSE per fold
    """
    if task not in HIDDEN_SCORER_TASKS:
        raise ValueError(f"task must be one of {HIDDEN_SCORER_TASKS}, got {task!r}.")
    if metric not in HIDDEN_SCORER_METRICS:
        raise ValueError(f"metric must be one of {HIDDEN_SCORER_METRICS}, got {metric!r}.")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)):
        raise ValueError(f"fraction must be a number, got {fraction!r}.")
    fraction = float(fraction)
    ok = 0.0 < fraction < 1.0 if task == "forecast" else 0.0 < fraction <= 1.0
    if not ok:
        bounds = "(0, 1)" if task == "forecast" else "(0, 1]"
        raise ValueError(f"fraction must lie in {bounds} for task={task!r}, got {fraction!r}.")
    if random_state is not None and (isinstance(random_state, bool)
                                     or not isinstance(random_state, (int, np.integer))):
        raise ValueError(f"random_state must be an int or None, got {random_state!r} (an int "
                         "hides the same values at every call).")
    return HiddenValueScorer(fraction, task, metric, bool(standardize),
                             None if random_state is None else int(random_state))


class _PerSeries(ClassifierMixin, BaseEstimator):
    """A fitted classifier seen by scikit-learn's scorers as one of numpy arrays: its
    ``predict`` / ``predict_proba`` of the frame, on the scored series only (``rows``), in the
    order of its labels. The ``X`` the scorer passes is the frame again, and not read."""

    def __init__(self, estimator: Any, frame: pd.DataFrame, rows: np.ndarray,
                 classes: np.ndarray) -> None:
        self.estimator = estimator
        self.frame = frame
        self.rows = rows
        self.classes_ = classes

    def predict(self, X: Any) -> np.ndarray:
        return _inferred(self.estimator.predict(self.frame).to_numpy()[self.rows])

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator.predict_proba(self.frame).to_numpy(np.float64)[self.rows]


class SeriesScorer:
    """The callable :func:`make_series_scorer` returns (see there); picklable, so it goes to
    the workers of ``GridSearchCV(n_jobs=k)``."""

    def __init__(self, scoring: Any) -> None:
        self.scoring = scoring

    def __repr__(self) -> str:
        return f"make_series_scorer({self.scoring!r})"

    def __call__(self, estimator: Any, X: pd.DataFrame, y: Any) -> float:
        """The scikit-learn score of ``estimator``'s predictions of the series of ``X``.

        Parameters
        ----------
        estimator : fitted LatentODEClassifier, or a Pipeline ending in one
            Its predictions (``predict`` or ``predict_proba``, as the scorer asks) are scored.
        X : pandas.DataFrame
            Long frame of the series to score (the test fold). Not modified.
        y : pandas.Series or array-like
            Labels in either form that the classifier's ``fit`` takes: one per row of ``X``
            (what cross-validation passes) or a Series indexed by series id.

        Returns
        -------
        float
            The scorer's value on the scored series (greater is better).
        """
        check_frame(X, "X")
        final = _final_step(estimator)
        if not hasattr(final, "_scored_labels"):
            raise ValueError(f"the series scorer scores a LatentODEClassifier (or a Pipeline "
                             f"ending in one), got {type(final).__name__}; a "
                             "LatentODERegressor is scored by make_hidden_scorer.")
        if y is None:
            raise ValueError("the series scorer needs y: one label per row of X, or one per "
                             "series id.")
        labels, rows = final._scored_labels(X, y)
        if not len(labels):
            raise ValueError("No series of X has both an observed target value to classify "
                             "and a label.")
        scorer = get_scorer(self.scoring)
        return float(scorer(_PerSeries(estimator, X, rows, final.classes_), X, _inferred(labels)))


def _inferred(labels: np.ndarray) -> np.ndarray:
    """Labels of object dtype as numbers where they are (``predict`` gives object labels when a
    series has no prediction; scikit-learn reads object numbers as an "unknown" target)."""
    return pd.Series(labels, dtype=object).infer_objects().to_numpy() if labels.dtype == object \
        else labels


def make_series_scorer(scoring: Any) -> SeriesScorer:
    """A scikit-learn classification scorer applied per series, for the classifier.

    :class:`~latentode.LatentODEClassifier` predicts one label per series of a long frame,
    while the ``y`` that ``cross_val_score`` / ``GridSearchCV`` pass holds one label per row
    (their splitters split rows), so scikit-learn's scorers (``scoring="roc_auc"``, ...)
    cannot compare them. This scorer reduces ``y`` to one label per series, as ``fit`` does
    (labels of a series' rows must agree; a Series indexed by id works too), and applies the
    scikit-learn scorer ``scoring`` to the classifier's ``predict`` or ``predict_proba`` of the
    series (whichever the scorer asks for), each series counting once. The series left out:
    those without an observed target value (their prediction is NaN) and, with
    ``semi_supervised=True``, those without a label, as in the classifier's ``score``.

    Parameters
    ----------
    scoring : str or callable
        A scikit-learn scorer: a name of :func:`sklearn.metrics.get_scorer_names`
        (``"roc_auc"``, ``"accuracy"``, ``"balanced_accuracy"``, ``"neg_log_loss"``,
        ``"f1_macro"``, ...) or a scorer built by :func:`sklearn.metrics.make_scorer`
        (e.g. ``make_scorer(fbeta_score, beta=2, pos_label="dead")``). Its sign convention
        is kept (``"neg_log_loss"`` is minus the log-loss: greater is better).

    Returns
    -------
    SeriesScorer
        ``scorer(estimator, X, y) -> float``, for ``scoring=`` of ``cross_val_score``,
        ``cross_validate`` and ``GridSearchCV`` (also in a dict of several scorers). It raises
        a ``ValueError`` when the estimator is no fitted classifier, when ``y`` is missing or
        does not give one label per series, or when no series of ``X`` can be scored.

    Raises
    ------
    ValueError
        For a ``scoring`` that scikit-learn does not know.

    Examples
    --------
    >>> from latentode.evaluation import make_series_scorer
    >>> make_series_scorer("roc_auc")
    make_series_scorer('roc_auc')

    In a cross-validation over series (``groups``: the id of each row; ``y``: one label per
    row)::

        from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
        cross_val_score(clf, df, df["id"].map(labels), groups=df["id"],
                        cv=StratifiedGroupKFold(5), scoring=make_series_scorer("roc_auc"))
    """
    get_scorer(scoring)  # an unknown name is scikit-learn's ValueError, listing the names
    return SeriesScorer(scoring)
