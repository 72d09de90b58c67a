"""``latentode.evaluation.make_hidden_scorer``: cross-validated imputation / forecast errors.

scikit-learn's ``scoring="neg_mean_squared_error"`` has no ``y`` to compare with (NaN); the
scorer hides values of each test fold, lets the fitted estimator predict them and returns
minus their (z-scored) MSE.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from _settings import TINY
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.evaluation import hide_values, make_hidden_scorer, mse, paper_mse_frame

#: one epoch, no interval calibration: the scorer's metrics are of point predictions
ONE_EPOCH = {**TINY, "max_epochs": 1, "calibrate": False}


@pytest.fixture(scope="module")
def frame(make_oscillators) -> pd.DataFrame:
    return make_oscillators(12, 10)


@pytest.fixture(scope="module")
def fitted(frame) -> LatentODERegressor:
    return LatentODERegressor(**ONE_EPOCH).fit(frame)


def _standardisation(est):
    cols = est.target_cols_
    return (dict(zip(cols, est.scaler_.mean_.tolist())),
            dict(zip(cols, est.scaler_.scale_.tolist())))


@pytest.mark.parametrize("task", ["interpolation", "forecast"])
def test_cross_val_score_gives_finite_scores_and_leaves_the_frame(frame, task):
    before = frame.copy()
    scores = cross_val_score(LatentODERegressor(**ONE_EPOCH), frame, groups=frame["id"],
                             cv=GroupKFold(3), scoring=make_hidden_scorer(0.3, task=task))
    assert scores.shape == (3,)
    assert np.isfinite(scores).all() and (scores < 0).all()  # minus an error
    pd.testing.assert_frame_equal(frame, before)


def test_interpolation_score_is_minus_the_hidden_values_mse(frame):
    train_idx, test_idx = next(GroupKFold(3).split(frame, groups=frame["id"]))
    train, test = frame.iloc[train_idx], frame.iloc[test_idx]
    est = LatentODERegressor(**ONE_EPOCH).fit(train)
    cols = est.target_cols_
    loc, scale = _standardisation(est)
    cond, hidden = hide_values(test, 0.3, columns=cols, random_state=7)
    by_hand = mse(test, est.predict(cond)[cols], hidden, columns=cols, loc=loc, scale=scale)
    scorer = make_hidden_scorer(0.3, random_state=7)
    assert scorer(est, test) == pytest.approx(-by_hand, rel=1e-12)
    assert scorer(est, test) == scorer(est, test)  # the same values hidden at every call
    raw = mse(test, est.predict(cond)[cols], hidden, columns=cols)
    assert make_hidden_scorer(0.3, random_state=7, standardize=False)(est, test) == \
        pytest.approx(-raw, rel=1e-12)
    paper = paper_mse_frame(test, est.predict(cond)[cols].to_numpy(), hidden, columns=cols)
    assert make_hidden_scorer(0.3, random_state=7, standardize=False, metric="paper_mse")(
        est, test) == pytest.approx(-paper, rel=1e-12)
    assert make_hidden_scorer(0.3, random_state=8)(est, test) != scorer(est, test)


def test_forecast_score_is_minus_the_mse_after_each_series_cut(fitted, frame):
    est, cols = fitted, fitted.target_cols_
    loc, scale = _standardisation(est)
    observed = frame[cols].notna().any(axis=1)
    span = frame["t"].where(observed).groupby(frame["id"]).agg(["min", "max"])
    cut = frame["id"].map(span["min"] + 0.75 * (span["max"] - span["min"]))
    past = frame[frame["t"] < cut]
    future = frame[(frame["t"] >= cut) & frame["id"].isin(past.loc[past[cols].notna().any(
        axis=1), "id"])]
    pred = est.extrapolate(past, times=future[["id", "t"]])
    by_hand = mse(future, pred[cols], future[cols].notna().to_numpy(), columns=cols, loc=loc,
                  scale=scale)
    assert len(future) > 10
    assert make_hidden_scorer(0.25, task="forecast")(est, frame) == pytest.approx(-by_hand,
                                                                                 rel=1e-12)


def test_grid_search_ranks_a_trained_model_above_a_one_epoch_one(make_oscillators):
    df = make_oscillators(24, 12)
    search = GridSearchCV(LatentODERegressor(**{**TINY, "lr": 1e-2, "calibrate": False}),
                          {"max_epochs": [1, 30]}, cv=GroupKFold(2), n_jobs=1,
                          scoring=make_hidden_scorer(0.3))
    search.fit(df, groups=df["id"])
    res = search.cv_results_
    assert search.best_params_ == {"max_epochs": 30}
    for split in ("split0_test_score", "split1_test_score"):
        one, trained = res[split]
        assert np.isfinite([one, trained]).all()
        assert trained > one  # the trained model's error is lower on each fold
    # measured: split 0 -0.255 -> -0.139, split 1 -0.646 -> -0.402


def test_scorer_pickles_and_reports_its_settings(fitted, frame):
    scorer = make_hidden_scorer(0.2, task="forecast", random_state=3)
    again = pickle.loads(pickle.dumps(scorer))
    assert again(fitted, frame) == scorer(fitted, frame)
    assert repr(scorer) == ("make_hidden_scorer(fraction=0.2, task='forecast', metric='mse', "
                            "standardize=True, random_state=3)")


def test_single_series_and_datetime_models(frame):
    one = frame[frame["id"] == "s0"].drop(columns="id")
    est = LatentODERegressor(**ONE_EPOCH).fit(one, id_col=None)
    for task in ("interpolation", "forecast"):
        assert np.isfinite(make_hidden_scorer(0.3, task=task)(est, one))
    stamps = frame.assign(t=pd.Timestamp("2024-01-01", tz="UTC")
                          + pd.to_timedelta(frame["t"], unit="h"))
    est = LatentODERegressor(**ONE_EPOCH).fit(stamps)
    for task in ("interpolation", "forecast"):
        assert np.isfinite(make_hidden_scorer(0.3, task=task)(est, stamps))


@pytest.mark.parametrize("kwargs, match", [
    (dict(fraction=0.0), r"fraction must lie in \(0, 1\]"),
    (dict(fraction=1.0, task="forecast"), r"fraction must lie in \(0, 1\) for task='forecast'"),
    (dict(task="extrapolation"), "task must be one of"),
    (dict(metric="r2"), "metric must be one of"),
    (dict(random_state=np.random.RandomState(0)), "random_state must be an int or None"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_hidden_scorer(**kwargs)


def test_nothing_to_hide_and_wrong_estimators_are_clear_errors(fitted, frame):
    firsts = frame.groupby("id").head(1)  # each series' first row is never hidden
    with pytest.raises(ValueError, match="found nothing to hide in X"):
        make_hidden_scorer()(fitted, firsts)
    with pytest.raises(ValueError, match="found nothing to forecast in X"):
        make_hidden_scorer(task="forecast")(fitted, firsts)
    with pytest.raises(ValueError, match="column 'v', which the estimator was fitted with"):
        make_hidden_scorer()(fitted, frame.drop(columns="v"))
    with pytest.raises(ValueError, match="needs a fitted estimator"):
        make_hidden_scorer()(LatentODERegressor(), frame)
    y = pd.Series(np.arange(12) % 2, index=[f"s{i}" for i in range(12)])
    clf = LatentODEClassifier(**ONE_EPOCH).fit(frame, y)
    with pytest.raises(ValueError, match="predicts labels"):
        make_hidden_scorer()(clf, frame)


def test_a_model_inside_nested_pipelines_is_scored_as_itself(fitted, frame):
    """The scorer reads the fitted attributes of the estimator at the end of the Pipelines,
    however deeply nested; before, a Pipeline inside a Pipeline was refused as unfitted."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    inner = Pipeline([("identity", FunctionTransformer()), ("model", fitted)])
    outer = Pipeline([("identity", FunctionTransformer()), ("inner", inner)])
    for task in ("interpolation", "forecast"):
        scorer = make_hidden_scorer(0.3, task=task, random_state=3)
        assert scorer(outer, frame) == scorer(inner, frame) == scorer(fitted, frame)
