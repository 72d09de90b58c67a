"""``latentode.evaluation.make_series_scorer``: scikit-learn's classification scorers per series.

The classifier predicts one label per series, a cross-validation's ``y`` holds one per row:
scikit-learn's ``scoring="roc_auc"`` cannot compare them (and now says so); the series scorer
reduces ``y`` to one label per series and applies the scikit-learn scorer to the predictions.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from _settings import TINY
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedGroupKFold,
    cross_val_predict,
    cross_val_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.datasets import make_oscillator_classes
from latentode.evaluation import make_series_scorer

#: one epoch, no interval calibration: every test here scores predict / predict_proba, which
#: the latent spread's calibration leaves unchanged (tests/test_recalibrate.py checks that)
ONE_EPOCH = {**TINY, "max_epochs": 1, "calibrate": False}
#: a small encoder-only classifier (as tests/test_classifier.py's FAST): learns in seconds
FAST = {**TINY, "classifier": "encoder", "rec_dim": 12, "units": 24, "gru_units": 16,
        "latent_dim": 4, "batch_size": 20, "early_stopping": False}
SCORERS = ["roc_auc", "accuracy", "neg_log_loss", "balanced_accuracy"]


@pytest.fixture(scope="module")
def task():
    """16 series of two frequencies, one label per id and one per row."""
    df, y = make_oscillator_classes(8, omegas=(1.0, 2.5), random_state=0)
    return df, y, df["id"].map(y)


@pytest.fixture(scope="module")
def fold(task):
    """The first fold of StratifiedGroupKFold(3): a classifier fitted on its training rows."""
    df, _, per_row = task
    train, test = next(StratifiedGroupKFold(3).split(df, per_row, groups=df["id"]))
    clf = LatentODEClassifier(**ONE_EPOCH).fit(df.iloc[train], per_row.iloc[train])
    return clf, df.iloc[test], per_row.iloc[test]


def _by_hand(name, clf, test, y):
    """The metric on predict_proba / predict per series and the labels of those series."""
    proba = clf.predict_proba(test)
    truth = y.loc[proba.index]
    return {"roc_auc": lambda: roc_auc_score(truth, proba[1]),
            "accuracy": lambda: accuracy_score(truth, clf.predict(test)),
            "neg_log_loss": lambda: -log_loss(truth, proba.to_numpy(), labels=clf.classes_),
            "balanced_accuracy": lambda: balanced_accuracy_score(truth, clf.predict(test)),
            }[name]()


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32, by hand
@pytest.mark.parametrize("name", SCORERS)
def test_equals_the_metric_computed_by_hand_on_one_fold(fold, task, name):
    clf, test, test_rows = fold
    y = task[1]
    expected = _by_hand(name, clf, test, y)
    assert np.isfinite(expected)
    scorer = make_series_scorer(name)
    # float32 probabilities: a log-loss differs in the 9th digit (sklearn renormalises them)
    assert scorer(clf, test, test_rows) == pytest.approx(expected, rel=1e-8)  # per-row labels
    by_id = y.loc[pd.unique(test["id"])[::-1]]  # labels by id, in another order
    assert scorer(clf, test, by_id) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("name", SCORERS)
def test_scikit_learn_string_scorers_say_why_and_name_the_remedy(task, name):
    """Before: InvalidIndexError (slice(None, None, None), 1) for roc_auc / neg_log_loss,
    'inconsistent numbers of samples: [72, 5]' for accuracy / balanced_accuracy."""
    df, _, per_row = task
    clf = LatentODEClassifier(**ONE_EPOCH)
    kwargs = {"groups": df["id"], "cv": StratifiedGroupKFold(3), "error_score": "raise"}
    with pytest.raises(ValueError, match=r"one label per series.*make_series_scorer"):
        cross_val_score(clf, df, per_row, scoring=name, **kwargs)
    pipe = Pipeline([("identity", FunctionTransformer()), ("clf", clf)])
    with pytest.raises(ValueError, match=r"called by a scikit-learn scorer"):
        cross_val_score(pipe, df, per_row, scoring=name, **kwargs)
    scores = cross_val_score(clf, df, per_row, scoring=make_series_scorer(name), **kwargs)
    assert np.isfinite(scores).all()


def test_cross_val_predict_says_why_and_names_the_recipe(task):
    """Before: IndexError: index 32 is out of bounds for axis 0 with size 12."""
    df, _, per_row = task
    with pytest.raises(ValueError, match=r"cross_val_predict.*one per series.*pd.concat"):
        cross_val_predict(LatentODEClassifier(**ONE_EPOCH), df, per_row, groups=df["id"],
                          cv=StratifiedGroupKFold(2), method="predict_proba")


def test_the_default_score_and_direct_calls_are_not_refused(fold, task):
    clf, test, test_rows = fold
    assert clf.score(test, test_rows) == pytest.approx(_by_hand("accuracy", clf, test, task[1]))
    df, _, per_row = task
    scores = cross_val_score(Pipeline([("clf", LatentODEClassifier(**ONE_EPOCH))]), df, per_row,
                             groups=df["id"], cv=StratifiedGroupKFold(3), error_score="raise")
    assert np.isfinite(scores).all()
    assert clf.predict_proba(test).shape == (test["id"].nunique(), 2)


def test_grid_search_ranks_a_trained_classifier_above_a_one_epoch_one(task):
    df, _, per_row = task
    search = GridSearchCV(LatentODEClassifier(**FAST), {"max_epochs": [1, 15]},
                          scoring=make_series_scorer("roc_auc"), cv=StratifiedGroupKFold(4),
                          error_score="raise")
    search.fit(df, per_row, groups=df["id"])
    one, trained = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"max_epochs": 15}
    assert trained > one + 0.1  # measured: 1.0 against 0.81


def test_parallel_grid_search_equals_serial(task):
    df, _, per_row = task
    scoring = {"auc": make_series_scorer("roc_auc"), "nll": make_series_scorer("neg_log_loss")}
    scores = []
    for n_jobs in (1, 2):
        search = GridSearchCV(LatentODEClassifier(**ONE_EPOCH), {"latent_dim": [2, 3]},
                              scoring=scoring, refit="auc", cv=StratifiedGroupKFold(2),
                              n_jobs=n_jobs, error_score="raise")
        search.fit(df, per_row, groups=df["id"])
        scores.append([search.cv_results_[f"split{k}_test_{m}"] for k in (0, 1)
                       for m in scoring])
    assert np.isfinite(scores[0]).all()
    np.testing.assert_array_equal(scores[1], scores[0])


def test_series_without_a_label_or_an_observation_are_left_out(fold, task):
    clf, test, _ = fold
    y = task[1]
    ids = list(pd.unique(test["id"]))
    labels = y.loc[ids]
    empty = test.copy()
    empty.loc[empty["id"] == ids[0], ["x0", "x1"]] = np.nan
    with pytest.warns(UserWarning, match="no observed value"):
        got = make_series_scorer("accuracy")(clf, empty, labels)
    kept = test[test["id"] != ids[0]]
    assert got == pytest.approx(_by_hand("accuracy", clf, kept, y))
    semi = clf.set_params(semi_supervised=True)  # a label missing: that series is left out
    try:
        got = make_series_scorer("accuracy")(semi, test, labels.drop(ids[1]))
    finally:
        clf.set_params(semi_supervised=False)
    assert got == pytest.approx(_by_hand("accuracy", clf, test[test["id"] != ids[1]], y))


def test_clear_errors_and_a_picklable_scorer(fold, task, make_oscillators):
    clf, test, test_rows = fold
    scorer = make_series_scorer("roc_auc")
    assert repr(scorer) == "make_series_scorer('roc_auc')"
    again = pickle.loads(pickle.dumps(scorer))
    assert again(clf, test, test_rows) == scorer(clf, test, test_rows)
    with pytest.raises(ValueError, match="not a valid scoring value"):
        make_series_scorer("roc-auc")
    with pytest.raises(ValueError, match="needs y"):
        scorer(clf, test, None)
    with pytest.raises(ValueError, match="different labels on the rows of series"):
        scorer(clf, test, np.arange(len(test)) % 2)
    frame = make_oscillators(6, 8)
    with pytest.raises(ValueError, match="scores a LatentODEClassifier.*make_hidden_scorer"):
        scorer(LatentODERegressor(**ONE_EPOCH).fit(frame), frame, np.zeros(len(frame)))
