"""``LatentODEClassifier``: learning, labels, errors, scikit-learn contracts, persistence.

Which of ``sklearn.utils.estimator_checks`` apply: the same as for the regressor (see
``tests/test_sklearn.py``): the checks that need only a constructed estimator. The others fit
numpy arrays, whereas the classifier takes a long DataFrame and one label per *series*.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY, as_saved_before, rewrite_saved_config
from sklearn.base import clone, is_classifier
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as ec

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.datasets import make_oscillator_classes
from latentode.nn.classifier import weighted_cross_entropy

#: a small encoder-only classifier: trains in seconds
#: TINY without the interval calibration, for tests of labels and predict_proba alone (the
#: latent spread's calibration leaves the probabilities unchanged)
PROBA = {**TINY, "calibrate": False}
FAST = {**TINY, "classifier": "encoder", "rec_dim": 12, "units": 24, "gru_units": 16,
        "latent_dim": 4, "batch_size": 20}


def oscillator_classes(n_per_class: int, omegas=(1.0, 2.5), seed: int = 0):
    """The classification task of :func:`latentode.datasets.make_oscillator_classes`."""
    return make_oscillator_classes(n_per_class, omegas=omegas, random_state=seed)


@pytest.fixture(scope="module")
def task():
    """100 training and 50 test series per class, two frequencies."""
    return oscillator_classes(100), oscillator_classes(50, seed=10)


@pytest.fixture(scope="module")
def small():
    return oscillator_classes(8)


@pytest.fixture(scope="module")
def fitted(small):
    df, y = small
    return LatentODEClassifier(**TINY).fit(df, y)


# ------------------------------------------------------------------------------ learning
def test_encoder_classifier_separates_two_frequencies(task):
    (df, y), (test, y_test) = task
    clf = LatentODEClassifier(**{**FAST, "max_epochs": 20, "early_stopping": False,
                                 "validation_fraction": 0.0}).fit(df, y)
    proba = clf.predict_proba(test)
    auc = roc_auc_score(y_test.loc[proba.index], proba[1])
    assert auc > 0.9  # measured 0.990
    assert clf.score(test, y_test) > 0.85


def test_latent_ode_classifier_learns_with_the_elbo(task):
    (df, y), (test, y_test) = task
    clf = LatentODEClassifier(**{**FAST, "classifier": "latent", "max_epochs": 12,
                                 "solver": "rk4", "early_stopping": False,
                                 "validation_fraction": 0.0}).fit(df, y)
    proba = clf.predict_proba(test)
    assert roc_auc_score(y_test.loc[proba.index], proba[1]) > 0.9
    # the jointly trained model is a Latent ODE of the series too
    forecast = clf.extrapolate(test, n_points=2)
    assert np.isfinite(forecast[["x0", "x1"]].to_numpy()).all()


def test_multiclass(task):
    df, y = oscillator_classes(60, omegas=(0.8, 1.8, 3.2))
    test, y_test = oscillator_classes(30, omegas=(0.8, 1.8, 3.2), seed=10)
    clf = LatentODEClassifier(**{**FAST, "max_epochs": 20, "early_stopping": False,
                                 "validation_fraction": 0.0}).fit(df, y)
    assert list(clf.classes_) == [0, 1, 2]
    proba = clf.predict_proba(test)
    assert list(proba.columns) == [0, 1, 2]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert clf.score(test, y_test) > 0.8
    assert roc_auc_score(y_test.loc[proba.index], proba.to_numpy(), multi_class="ovr") > 0.9


# ------------------------------------------------------------------------------ the loss
def test_weighted_cross_entropy_numbers():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (K=2, B=2)
    ce = weighted_cross_entropy(logits, torch.tensor([0, 0]), torch.tensor([1.0, 3.0]))
    log2, a, b = np.log(2.0), np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0))
    np.testing.assert_allclose(ce.numpy(), [(a + log2) / 2, 3 * (b + log2) / 2], rtol=1e-6)


@pytest.mark.parametrize("class_weight", [None, "balanced", {0: 1.0, 1: 5.0}])
def test_class_weight_changes_the_loss_as_expected(class_weight):
    """First-epoch training loss (one batch, weights before the step) = mean of w_b CE_b."""
    df, y = oscillator_classes(12)
    y = y.iloc[4:]  # 8 of class 0, 12 of class 1: unbalanced
    df = df[df["id"].isin(y.index)]
    params = {**FAST, "batch_size": 64, "validation_fraction": 0.0, "class_weight": class_weight}
    untrained = LatentODEClassifier(**{**params, "max_epochs": 0}).fit(df, y)
    proba = untrained.predict_proba(df)
    ce = -np.log(proba.to_numpy()[np.arange(len(proba)), y.loc[proba.index].to_numpy()])
    w = {None: {0: 1.0, 1: 1.0}, "balanced": {0: 20 / (2 * 8), 1: 20 / (2 * 12)}}.get(
        class_weight if not isinstance(class_weight, dict) else "dict", class_weight)
    expected = np.mean(y.loc[proba.index].map(w).to_numpy() * ce)
    one = LatentODEClassifier(**{**params, "max_epochs": 1}).fit(df, y)
    assert one.history_.records[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------ labels
def test_label_forms_agree(small):
    df, y = small
    by_id = LatentODEClassifier(**PROBA).fit(df, y)
    per_row = LatentODEClassifier(**PROBA).fit(df, df["id"].map(y))
    as_array = LatentODEClassifier(**PROBA).fit(df, df["id"].map(y).to_numpy())
    for other in (per_row, as_array):
        pd.testing.assert_frame_equal(other.predict_proba(df), by_id.predict_proba(df))
    # string labels, partly given on rows only (NaN rows ignored)
    names = df["id"].map(y).map({0: "slow", 1: "fast"}).astype(object)
    names.iloc[1::2] = np.nan
    clf = LatentODEClassifier(**PROBA).fit(df, names)
    assert list(clf.classes_) == ["fast", "slow"]
    assert set(clf.predict(df)) <= {"fast", "slow"}


def test_outputs_one_row_per_series_in_first_appearance_order(fitted, small):
    df, _ = small
    shuffled = df.sample(frac=1.0, random_state=1)
    proba = fitted.predict_proba(shuffled)
    assert list(proba.index) == list(pd.unique(shuffled["id"]))
    assert proba.index.name == "id" and list(proba.columns) == list(fitted.classes_)
    pred = fitted.predict(shuffled)
    assert list(pred.index) == list(proba.index)
    np.testing.assert_array_equal(pred.to_numpy(),
                                  fitted.classes_[proba.to_numpy().argmax(axis=1)])
    # the probabilities of a series do not depend on the row order or on the other series
    alone = fitted.predict_proba(df[df["id"] == 3])
    np.testing.assert_allclose(alone.loc[3], proba.loc[3], rtol=1e-5)


def test_series_without_observations_get_nan(fitted, small):
    df, _ = small
    empty = df.copy()
    empty.loc[empty["id"] == 2, ["x0", "x1"]] = np.nan
    with pytest.warns(UserWarning, match="no observed value to condition on: 2"):
        proba = fitted.predict_proba(empty)
    assert proba.loc[2].isna().all() and proba.drop(index=2).notna().all().all()
    with pytest.warns(UserWarning):
        pred = fitted.predict(empty)
    assert pd.isna(pred.loc[2]) and pred.drop(index=2).notna().all()



def test_fit_warns_about_series_without_observations_in_classifier_terms(small):
    df, y = small
    empty = df.copy()
    empty.loc[empty["id"] == 2, ["x0", "x1"]] = np.nan
    with pytest.warns(UserWarning, match=r"left out of the fit: 2 \(column 'id'\); "
                                         r"predict_proba and predict return NaN") as record:
        clf = LatentODEClassifier(**{**FAST, "max_epochs": 1}).fit(empty, y)
    assert not any("extrapolate" in str(w.message) for w in record)
    assert clf.predict_proba(empty.drop(index=empty.index[empty["id"] == 2])).notna().all().all()

@pytest.mark.parametrize(
    "make_y, match",
    [
        (lambda df, y: y.drop(index=[3, 5]), r"no label for 2 series of df: 3, 5 \(column 'id'\)"),
        (lambda df, y: pd.concat([y, pd.Series([1], index=[99])]),
         r"labels for series 99 that are not in df"),
        (lambda df, y: pd.Series(0, index=y.index), r"single class \(0\)"),
        (lambda df, y: None, "needs y"),
        (lambda df, y: np.zeros(7), r"one per row of df \(\d+ rows\)"),
        (lambda df, y: pd.Series(np.arange(len(df)) % 2, index=df.index),
         "different labels on the rows of series 0"),
        (lambda df, y: y.astype(float) + 0.5, "Unknown label type: continuous"),
        (lambda df, y: pd.concat([y, y.iloc[:1]]), "several labels for series 0"),
        (lambda df, y: y.astype(object).where(y.index % 2 == 0, "b"),  # was "Unknown label
         r"^The labels mix types that cannot be sorted \(e\.g\. strings and numbers\)"),
        (lambda df, y: pd.Series([(int(v), 1 - int(v)) for v in y], index=y.index,
                                 dtype=object),  # was scikit-learn's "legacy multi-label"
         r"^The label of series 0 \(column 'id'\) is a tuple \(\(\d, \d\)\); a label is one "
         r"class per series .* \(\d+ such labels\)\.$"),
        # one label per row, its index reset (was read as labels by id, with no hint)
        (lambda df, y: df["id"].map(y).reset_index(drop=True).set_axis(
            pd.RangeIndex(100, 100 + len(df))),
         r"not in df \(column 'id'\)\. A Series of one label per row must have df's index "
         r"\(it has \d+ labels for the \d+ rows of df but another index\)"),
    ],
    ids=["missing", "unknown-id", "single-class", "none", "wrong-length", "varying",
         "continuous", "duplicate-id", "mixed-types", "tuples", "per-row-other-index"],
)
def test_bad_labels_are_clear_errors(small, make_y, match):
    df, y = small
    clf = LatentODEClassifier(**TINY)
    with pytest.raises(ValueError, match=match):
        clf.fit(df, make_y(df, y))
    assert not hasattr(clf, "model_")


def test_warm_start_with_other_classes_names_them_plainly(small):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "max_epochs": 1, "warm_start": True}).fit(df, y)
    three = pd.Series(np.arange(len(y)) % 3, index=y.index)
    with pytest.raises(ValueError, match=re.escape(  # was [np.int64(0), np.int64(1)]
            "warm_start=True needs the classes of the previous fit (0, 1), got 0, 1, 2.")):
        clf.fit(df, three)


def test_bad_class_weight(small):
    df, y = small
    with pytest.raises(ValueError, match="class_weight has a weight for 7, which is not a class"):
        LatentODEClassifier(**{**TINY, "class_weight": {7: 2.0}}).fit(df, y)
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        LatentODEClassifier(**{**TINY, "class_weight": "even"}).fit(df, y)
    with pytest.raises(ValueError, match="ce_weight must be a positive finite number"):
        LatentODEClassifier(**{**TINY, "ce_weight": 0}).fit(df, y)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda df: df.drop(columns="t"),
        lambda df: df.assign(t=np.where(np.arange(len(df)) == 3, np.nan, df["t"])),
        lambda df: df.assign(x0=np.where(np.arange(len(df)) == 2, np.inf, df["x0"])),
        lambda df: df.assign(x1=np.nan),
        lambda df: df.assign(x0=df["x0"].astype(str)),
        lambda df: df.iloc[:0],
    ],
    ids=["no-time", "nan-time", "inf-value", "empty-channel", "string-target", "empty"],
)
def test_bad_frames_give_the_regressors_errors(small, spoil):
    df, y = small
    bad = spoil(df)
    with pytest.raises(ValueError) as reg:
        LatentODERegressor(**TINY).fit(bad, target_cols=["x0", "x1"])
    with pytest.raises(ValueError) as clf:
        LatentODEClassifier(**TINY).fit(bad, y, target_cols=["x0", "x1"])
    assert str(clf.value) == str(reg.value)


# ------------------------------------------------------------------------------ scikit-learn
@pytest.mark.parametrize(
    "check",
    [ec.check_no_attributes_set_in_init, ec.check_get_params_invariance, ec.check_set_params,
     ec.check_parameters_default_constructible, ec.check_estimator_repr,
     ec.check_estimator_cloneable, ec.check_estimator_tags_renamed, ec.check_valid_tag_types,
     ec.check_do_not_raise_errors_in_init_or_set_params, ec.check_mixin_order,
     ec.check_estimators_unfitted],
    ids=lambda c: c.__name__,
)
def test_applicable_sklearn_checks(check):
    check("LatentODEClassifier", LatentODEClassifier())


def test_is_a_classifier_with_the_regressors_parameters():
    clf = LatentODEClassifier()
    assert is_classifier(clf) and not is_classifier(LatentODERegressor())
    params = clf.get_params()
    # the regressor's parameters and defaults, except the readout (the classifier reads z_t0),
    # the scoring (the classifier's own options), the weight averaging (on by default here)
    # and the patience (the regressor's grew to 20 on 2026-12-02)
    assert {k: v for k, v in params.items() if k in LatentODERegressor().get_params()} == \
        {**LatentODERegressor().get_params(), "readout": "latent", "scoring": "log_loss",
         "weight_averaging": 2.0, "patience": 10}
    assert LatentODERegressor().get_params()["readout"] == "neighbours"
    assert (params["classifier"], params["ce_weight"], params["class_weight"],
            params["scoring"]) == \
        ("latent", 10.0, None, "log_loss")
    with pytest.raises(NotFittedError):
        clf.predict_proba(pd.DataFrame({"id": [0], "t": [0.0], "x": [1.0]}))


def test_clone_pickle_save_load_predict_identically(fitted, small, tmp_path):
    df, y = small
    expected = fitted.predict_proba(df)
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params() and not hasattr(twin, "classes_")
    other = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(other.predict_proba(df), expected, check_exact=True)
    fitted.save(tmp_path / "clf.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "clf.latentode")
    pd.testing.assert_frame_equal(loaded.predict_proba(df), expected, check_exact=True)
    pd.testing.assert_series_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.get_params() == fitted.get_params()
    # a classifier file is not a regressor file, and the other way round
    with pytest.raises(ValueError, match=r"not a valid latentode file: params: unknown .*; the "
                                         r"file was saved by LatentODEClassifier: load it with "
                                         r"its own class \(LatentODEClassifier\.load\)"):
        LatentODERegressor.load(tmp_path / "clf.latentode")
    LatentODERegressor(**TINY).fit(df).save(tmp_path / "reg.latentode")
    with pytest.raises(ValueError, match="the file holds not a classifier"):
        LatentODEClassifier.load(tmp_path / "reg.latentode")


def test_pickle_from_before_dropout_and_weight_decay_loads_and_refits(fitted, small):
    df, y = small
    state = fitted.__getstate__()
    del state["classifier_dropout"], state["weight_decay"], state["callbacks"]
    old = LatentODEClassifier.__new__(LatentODEClassifier)
    old.__setstate__(state)
    assert (old.classifier_dropout, old.weight_decay, old.callbacks) == (0.0, 0.0, None)
    pd.testing.assert_frame_equal(old.predict_proba(df), fitted.predict_proba(df),
                                  check_exact=True)
    old.set_params(max_epochs=1).fit(df, y)


def test_class_weight_of_a_class_absent_from_a_fold(small):
    """As scikit-learn: a weight for a class absent from ``y`` is ignored when every class of
    ``y`` has one (a dict of every class in a cross-validation fold without a rare one: the
    fold failed, its score NaN); a key naming no class while a class has none is a typo."""
    df, y = small
    rare = y.copy()
    rare.iloc[0] = 2  # a third class held by one series
    weights = {0: 1.0, 1: 2.0, 2: 5.0}
    scores = cross_val_score(LatentODEClassifier(**{**PROBA, "max_epochs": 1,
                                                    "class_weight": weights}),
                             df, df["id"].map(rare), groups=df["id"], cv=GroupKFold(3),
                             error_score="raise")
    assert np.isfinite(scores).all()
    two = LatentODEClassifier(**{**PROBA, "max_epochs": 1, "class_weight": weights})
    assert list(two.fit(df, y).classes_) == [0, 1]
    assert two._class_weights(two.classes_, np.array([0, 1])).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="class_weight has a weight for 2, which is not a class"):
        LatentODEClassifier(**{**PROBA, "class_weight": {1: 2.0, 2: 5.0}}).fit(df, y)
    with pytest.raises(ValueError, match=r"class_weight\[2\] must be a non-negative"):
        LatentODEClassifier(**{**PROBA, "class_weight": {0: 1.0, 1: 2.0, 2: -1.0}}).fit(df, y)


def test_string_classes_and_class_weight_dict_survive_saving(small, tmp_path):
    df, y = small
    names = y.map({0: "alive", 1: "dead"})
    clf = LatentODEClassifier(**{**TINY, "class_weight": {"dead": 3.0}}).fit(df, names)
    clf.save(tmp_path / "c.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "c.latentode")
    assert loaded.class_weight == {"dead": 3.0} and list(loaded.classes_) == ["alive", "dead"]
    pd.testing.assert_series_equal(loaded.predict(df), clf.predict(df))
    ints = LatentODEClassifier(**{**TINY, "class_weight": {1: 3.0}}).fit(df, y)
    ints.save(tmp_path / "i.latentode")
    assert LatentODEClassifier.load(tmp_path / "i.latentode").class_weight == {1: 3.0}


def test_pipeline_and_group_cross_validation(small):
    df, y = small
    renamed = df.rename(columns={"id": "stay", "t": "hours"})
    pipe = Pipeline([("identity", FunctionTransformer()), ("clf", LatentODEClassifier(**PROBA))])
    pipe.fit(renamed, y, clf__time_col="hours", clf__id_col="stay")
    assert pipe.predict_proba(renamed).index.name == "stay"
    assert 0.0 <= pipe.score(renamed, y) <= 1.0
    per_row = df["id"].map(y)  # the splitters index rows: one label per row, ids as groups
    for cv in (GroupKFold(2), StratifiedGroupKFold(2)):
        scores = cross_val_score(LatentODEClassifier(**PROBA), df, per_row, groups=df["id"], cv=cv)
        assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_out_of_fold_probabilities_per_series(small):
    """The recipe for per-series out-of-fold predictions (``cross_val_predict`` indexes the
    predictions by row, and the classifier gives one per series, so it cannot): loop over the
    splitter and concatenate each fold's ``predict_proba``."""
    df, y = small
    clf = LatentODEClassifier(**{**FAST, "max_epochs": 15, "early_stopping": False})
    per_row = df["id"].map(y)
    folds = StratifiedGroupKFold(4).split(df, per_row, groups=df["id"])
    oof = pd.concat([clone(clf).fit(df.iloc[train], per_row.iloc[train])
                     .predict_proba(df.iloc[test]) for train, test in folds])
    assert sorted(oof.index) == sorted(y.index)  # every series once, from the fold without it
    assert list(oof.columns) == [0, 1] and np.allclose(oof.sum(axis=1), 1.0)
    auc = roc_auc_score(y.loc[oof.index], oof[1])
    assert auc > 0.7  # measured 1.0: the two frequencies are told apart out of fold


def test_encoder_only_classifier_has_no_generative_methods(small):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "classifier": "encoder"}).fit(df, y)
    for method in (clf.extrapolate, clf.sample):
        with pytest.raises(ValueError, match="needs the Latent ODE classifier"):
            method(df, 2)


# ------------------------------------------------------------------------------ scoring
def _validation_ids(clf, df):
    """The ids of the series ``fit`` held out for validation (its split, reproduced)."""
    from latentode.data import split_series, validate_frame
    from latentode.utils import draw_seed

    vf = validate_frame(df, time_col="t", id_col="id", empty_series="drop")
    seeds = np.random.SeedSequence(draw_seed(clf.random_state)).generate_state(3)
    _, val_idx = split_series(vf.n_series, float(clf.validation_fraction),
                              np.random.default_rng(seeds[0]))
    return vf.series_ids[val_idx]


@pytest.mark.parametrize("scoring, seed", [("log_loss", 0), ("roc_auc", 2)])
def test_scoring_watches_the_documented_validation_score(scoring, seed):
    from sklearn.metrics import log_loss

    df, y = oscillator_classes(12)
    weights = {0: 1.0, 1: 2.5}
    clf = LatentODEClassifier(**{**TINY, "max_epochs": 6, "early_stopping": False, "lr": 0.05,
                                 "validation_fraction": 0.4, "scoring": scoring,
                                 "class_weight": weights, "random_state": seed,
                                 "ce_weight": 100.0,
                                 "head_inputs": "latent"}).fit(df, y)  # seeds chosen for it
    hist = clf.history_
    assert hist.monitor == f"val_{scoring}"
    curve = np.array(hist[f"val_{scoring}"], dtype=float)
    assert len(curve) == 6 and np.isfinite(curve).all()
    assert np.ptp(curve) > 1e-4  # the epochs differ, so choosing among them can go wrong
    best = int(np.argmin(curve) if scoring == "log_loss" else np.argmax(curve))
    assert hist.best_epoch == best and hist.best_loss == pytest.approx(curve[best], abs=1e-12)
    assert best < 5 and abs(curve[5] - curve[best]) > 1e-3  # (seeds chosen so) not the last
    # the restored weights are those of the best epoch: predict_proba on the validation
    # series gives back its score, computed by scikit-learn
    ids = _validation_ids(clf, df)
    assert 0 < len(ids) < 24 and len(np.unique(y.loc[ids])) == 2
    proba = clf.predict_proba(df[df["id"].isin(ids)])
    proba = proba.div(proba.sum(axis=1), axis=0)  # float32 softmax: sums to 1 within 1e-7
    truth = y.loc[proba.index]
    if scoring == "log_loss":  # weighted by class_weight
        value = log_loss(truth, proba.to_numpy(), sample_weight=truth.map(weights),
                         labels=clf.classes_)
    else:
        value = roc_auc_score(truth, proba[1])
    assert value == pytest.approx(curve[best], abs=1e-6)
    # both scores are recorded whatever is watched, and the other one is the same curve
    other = "val_roc_auc" if scoring == "log_loss" else "val_log_loss"
    assert np.isfinite(np.array(hist[other], dtype=float)).all()


def test_scoring_loss_watches_the_objective_and_no_validation_watches_training(small):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "max_epochs": 3, "scoring": "loss",
                                 "validation_fraction": 0.3}).fit(df, y)
    hist = clf.history_
    assert hist.monitor == "val_loss"
    assert hist.best_loss == pytest.approx(min(hist["val_loss"]), abs=1e-12)
    for scoring in ("log_loss", "roc_auc"):  # nothing to validate on: the training loss
        alone = LatentODEClassifier(**{**TINY, "scoring": scoring,
                                       "validation_fraction": 0.0}).fit(df, y)
        assert alone.history_.monitor == "train_loss"
        assert alone.history_["val_log_loss"] == [None, None]


def test_roc_auc_scoring_errors_before_training(small, task):
    (df3, y3) = oscillator_classes(6, omegas=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"scoring='roc_auc' needs two classes; y has 3 "):
        LatentODEClassifier(**{**TINY, "scoring": "roc_auc"}).fit(df3, y3)
    LatentODEClassifier(**{**TINY, "scoring": "log_loss", "max_epochs": 1}).fit(df3, y3)
    df, y = small  # 16 series, one validation series: a single class
    with pytest.raises(ValueError, match=r"validation series of both classes, but the 1 "
                                         r"validation series .* are all of class"):
        LatentODEClassifier(**{**TINY, "scoring": "roc_auc",
                               "validation_fraction": 0.05}).fit(df, y)
    with pytest.raises(ValueError, match="scoring must be"):
        LatentODEClassifier(**{**TINY, "scoring": "accuracy"}).fit(df, y)


def test_scoring_survives_clone_pickle_save_load(small, tmp_path):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "scoring": "roc_auc", "validation_fraction": 0.5})
    assert clone(clf).scoring == "roc_auc"
    clf.fit(df, y)
    expected = clf.predict_proba(df)
    clf.save(tmp_path / "auc.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "auc.latentode")
    assert loaded.scoring == "roc_auc" and loaded.history_.monitor == "val_roc_auc"
    assert loaded.history_.best_loss == clf.history_.best_loss
    assert loaded.history_["val_roc_auc"] == clf.history_["val_roc_auc"]
    pd.testing.assert_frame_equal(loaded.predict_proba(df), expected, check_exact=True)
    again = pickle.loads(pickle.dumps(clf))
    assert again.scoring == "roc_auc" and again.history_.monitor == "val_roc_auc"


# ------------------------------------------------------------------------------ regularisation
def test_head_dropout_is_unbiased_in_training_and_off_in_eval():
    from latentode.nn.classifier import ClassifierHead

    torch.manual_seed(0)
    plain = ClassifierHead(6, 3, n_static=2, units=8, n_layers=0)  # a linear map
    head = ClassifierHead(6, 3, n_static=2, units=8, n_layers=0, dropout=0.4)
    assert list(head.state_dict()) == list(plain.state_dict())  # same keys: files load alike
    head.load_state_dict(plain.state_dict())
    z, s = torch.randn(5, 6), torch.randn(5, 2)
    head.eval()
    expected = plain.eval()(z, s).detach()
    torch.testing.assert_close(head(z, s), expected, rtol=0, atol=0)  # eval: the whole head
    head.train()
    with torch.no_grad():
        draws = torch.stack([head(z, s) for _ in range(4000)])
    assert (draws.std(0) > 0.05).all()  # training: each call drops other inputs
    # inverted dropout keeps the mean of a linear map: within ~4 standard errors
    err = (draws.mean(0) - expected).abs() / (draws.std(0) / np.sqrt(4000))
    assert float(err.max()) < 4.5
    # the hidden layers are dropped too: a ReLU head's training outputs vary with z fixed
    deep = ClassifierHead(6, 2, units=8, n_layers=2, dropout=0.5).train()
    with torch.no_grad():
        outs = torch.stack([deep(z) for _ in range(50)])
    assert float(outs.std(0).min()) > 0.0
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        ClassifierHead(6, 2, dropout=1.0)


def test_head_dropout_masks_come_from_the_generator():
    from latentode.nn.classifier import ClassifierHead

    torch.manual_seed(0)
    head = ClassifierHead(6, 3, n_static=2, units=8, n_layers=2, dropout=0.5,
                          n_summary=4, wide=True).train()
    z, s, u = torch.randn(5, 6), torch.randn(5, 2), torch.randn(5, 4)

    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([head(z, s, u, generator=gen) for _ in range(3)]).detach()

    torch.manual_seed(1)  # the global generator plays no part
    first = draw(7)
    torch.manual_seed(2)
    torch.testing.assert_close(draw(7), first, rtol=0, atol=0)
    assert float((first[0] - first[1]).abs().max()) > 0.0  # each call its own masks
    assert float((draw(8) - first).abs().max()) > 0.0
    # an all-kept mask is the eval-mode head: the masks only zero entries and rescale
    kept = ClassifierHead(6, 3, n_static=2, units=8, n_layers=2, dropout=1e-12).train()
    out = kept(z, s, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, kept.eval()(z, s))


def test_classifier_dropout_fits_are_reproducible_with_random_state(small):
    df, y = small
    params = {**TINY, "max_epochs": 2, "classifier_dropout": 0.5}
    for kind in ("latent", "encoder"):
        torch.manual_seed(0)
        first = LatentODEClassifier(**params, classifier=kind).fit(df, y).predict_proba(df)
        torch.manual_seed(1)  # another state of torch's global generator: the same fit
        again = LatentODEClassifier(**params, classifier=kind).fit(df, y).predict_proba(df)
        pd.testing.assert_frame_equal(again, first, check_exact=True)
        other = LatentODEClassifier(**{**params, "random_state": 1},
                                    classifier=kind).fit(df, y).predict_proba(df)
        assert float((other - first).abs().max().max()) > 0.0


def test_classifier_dropout_and_weight_decay_fit_predict_save_load(small, tmp_path):
    df, y = small
    params = {**TINY, "max_epochs": 3, "classifier_dropout": 0.5, "weight_decay": 1e-3}
    clf = LatentODEClassifier(**params).fit(df, y)
    assert clf.model_.classifier.dropout == 0.5
    assert clf.model_.hparams["classifier_dropout"] == 0.5
    first = clf.predict_proba(df)
    pd.testing.assert_frame_equal(clf.predict_proba(df), first, check_exact=True)  # eval mode
    assert clone(clf).get_params() == clf.get_params()
    clf.save(tmp_path / "reg.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "reg.latentode")
    assert (loaded.classifier_dropout, loaded.weight_decay) == (0.5, 1e-3)
    assert loaded.model_.classifier.dropout == 0.5
    pd.testing.assert_frame_equal(loaded.predict_proba(df), first, check_exact=True)
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(clf)).predict_proba(df), first,
                                  check_exact=True)
    # warm start trains on with this fit's dropout
    clf.set_params(warm_start=True, max_epochs=1, classifier_dropout=0.2).fit(df, y)
    assert clf.model_.classifier.dropout == 0.2 and clf.history_.n_epochs == 4


def test_files_without_the_regularisation_parameters_load(small, tmp_path):
    """A classifier file written before ``classifier_dropout`` / ``weight_decay`` existed."""
    df, y = small
    clf = LatentODEClassifier(**TINY).fit(df, y)
    clf.save(tmp_path / "new.latentode")

    def edit(config):
        for name in ("classifier_dropout", "weight_decay"):
            config["params"].pop(name)
        config["model_hparams"].pop("classifier_dropout")

    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "old.latentode", edit)
    old = LatentODEClassifier.load(tmp_path / "old.latentode")
    assert (old.classifier_dropout, old.weight_decay) == (0.0, 0.0)
    pd.testing.assert_frame_equal(old.predict_proba(df), clf.predict_proba(df), check_exact=True)


def test_weight_decay_shrinks_the_weights(small):
    df, y = small
    norms = {}
    for decay in (0.0, 1.0):
        clf = LatentODEClassifier(**{**TINY, "max_epochs": 6, "lr": 0.05, "weight_decay": decay,
                                     "early_stopping": False}).fit(df, y)
        norms[decay] = sum(float(p.detach().pow(2).sum())
                           for p in clf.model_.classifier.parameters())
    assert norms[1.0] < 0.7 * norms[0.0]  # measured 5.41 against 11.09


@pytest.mark.parametrize("params, match", [
    ({"classifier_dropout": 1.0}, r"classifier_dropout must lie in \[0, 1\), got 1.0"),
    ({"classifier_dropout": -0.1}, r"classifier_dropout must lie in \[0, 1\)"),
    ({"weight_decay": -1e-3}, "weight_decay must be a non-negative finite number"),
    ({"weight_decay": float("nan")}, "weight_decay must be a non-negative finite number"),
])
def test_bad_regularisation_parameters(small, params, match):
    df, y = small
    with pytest.raises(ValueError, match=match):
        LatentODEClassifier(**{**TINY, **params}).fit(df, y)


# ------------------------------------------------------------------------------ head inputs
def summary_batch():
    """Two series, three channels: series 0 has 3 valid time points (a 4th is padding, with
    a "value" that must be ignored) and never observes channel 2; series 1 observes every
    channel once or more."""
    from latentode.batch import Batch

    times = torch.tensor([[0.0, 0.5, 2.0, 2.0], [0.0, 1.0, 3.0, 4.0]])
    values = torch.tensor([
        [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, -1.0, 0.0], [9.0, 9.0, 9.0]],
        [[-2.0, 0.0, 5.0], [0.0, 0.0, 0.0], [4.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    ])
    mask = torch.tensor([
        [[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]],   # the last row is padding
        [[1.0, 0, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]],
    ])
    return Batch(times, values, mask, torch.tensor([3, 4]))


def test_series_summary_numbers_on_a_hand_made_batch():
    from latentode.nn.summary import SUMMARY_STATS, series_summary

    b = summary_batch()
    out = series_summary(b.times, b.values, b.mask, b.lengths)
    assert out.shape == (2, len(SUMMARY_STATS), 3)
    assert SUMMARY_STATS == ("last", "mean", "min", "max", "log_count", "since_last", "missing")
    ln = np.log
    expected = torch.tensor([
        # channels:  0            1             2 (never observed in series 0)
        [[3.0, -1.0, 0.0],                       # last
         [2.0, 0.5, 0.0],                        # mean of (1, 3), of (2, -1)
         [1.0, -1.0, 0.0],                       # min
         [3.0, 2.0, 0.0],                        # max
         [ln(3.0), ln(3.0), 0.0],                # log(1 + count): 2, 2, 0
         [0.0, 0.0, 0.0],                        # last time 2.0 - last observation 2.0
         [0.0, 0.0, 1.0]],                       # missing
        [[1.0, 1.0, 5.0],
         [1.0, 1.0, 5.0],                        # mean of (-2, 4, 1)
         [-2.0, 1.0, 5.0],
         [4.0, 1.0, 5.0],
         [ln(4.0), ln(2.0), ln(2.0)],
         [0.0, 1.0, 4.0],                        # 4 - 4, 4 - 3, 4 - 0
         [0.0, 0.0, 0.0]],
    ])
    torch.testing.assert_close(out, expected.float())


def test_series_summary_standardisation_uses_the_fitted_series_only():
    from latentode.nn.summary import SUMMARY_STATS, SeriesSummary

    b = summary_batch()
    summary = SeriesSummary(3)
    torch.testing.assert_close(summary(b), SeriesSummary.raw(b).flatten(1))  # before fit: raw
    summary.fit([b])
    raw = SeriesSummary.raw(b).double()
    last = SUMMARY_STATS.index("last")
    # channel 2 is observed by series 1 alone: its value statistics are that series' (sd 0 -> 1)
    assert float(summary.loc[last, 2]) == 5.0 and float(summary.scale[last, 2]) == 1.0
    # channel 0, "mean": mean and (population) sd of 2.0 and 1.0
    k = SUMMARY_STATS.index("mean")
    assert np.isclose(float(summary.loc[k, 0]), 1.5) and np.isclose(float(summary.scale[k, 0]),
                                                                     0.5)
    # log_count over both series, channel 2 included with its 0
    k = SUMMARY_STATS.index("log_count")
    assert np.isclose(float(summary.loc[k, 2]), float(raw[:, k, 2].mean()))
    # the missing indicator is left as 0 / 1
    k = SUMMARY_STATS.index("missing")
    assert (float(summary.loc[k].abs().max()), float(summary.scale[k].min())) == (0.0, 1.0)
    out = summary(b).view(2, len(SUMMARY_STATS), 3)
    # series 0 does not observe channel 2: 0 for its value statistics, the indicator says so
    for k, name in enumerate(SUMMARY_STATS):
        if name in ("last", "mean", "min", "max", "since_last"):
            assert float(out[0, k, 2]) == 0.0
    assert float(out[0, SUMMARY_STATS.index("missing"), 2]) == 1.0
    # observed entries: (x - loc) / scale; over the fitted series, mean 0
    k = SUMMARY_STATS.index("mean")
    torch.testing.assert_close(out[:, k, 0], torch.tensor([1.0, -1.0]))


def test_wide_and_deep_head_numbers():
    from latentode.nn.classifier import ClassifierHead

    torch.manual_seed(0)
    z, s, u = torch.randn(4, 3), torch.randn(4, 2), torch.randn(4, 5)
    deep = ClassifierHead(3, 2, n_static=2, units=8, n_layers=1, n_summary=5)
    assert deep.wide is None and deep.net[0].in_features == 3 + 2 + 5
    torch.testing.assert_close(deep(z, s, u), deep.net(torch.cat([z, s, u], -1)))
    wide = ClassifierHead(3, 2, n_static=2, units=8, n_layers=1, n_summary=5, wide=True)
    assert wide.net[0].in_features == 3 + 2
    torch.testing.assert_close(wide(z, s, u), wide.net(torch.cat([z, s], -1)) + wide.wide(u))
    # K samples of z share the series' summaries
    zk = torch.randn(6, 4, 3)
    torch.testing.assert_close(wide(zk, s, u)[2], wide(zk[2], s, u))
    with pytest.raises(ValueError, match="takes 5 summary features; got none"):
        wide(z, s)
    # without summaries, the state-dict keys of before (older files load)
    assert list(ClassifierHead(3, 2, units=8).state_dict()) == [
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]


@pytest.mark.parametrize("head", ["latent+summary", "latent+wide"])
@pytest.mark.parametrize("kind", ["latent", "encoder"])
def test_head_inputs_fit_predict_save_load_clone(small, tmp_path, monkeypatch, head, kind):
    from latentode.nn.summary import SeriesSummary

    df, y = small
    seen = []
    fit = SeriesSummary.fit

    def spy(self, batches):
        batches = list(batches)
        seen.append(sum(b.batch_size for b in batches))
        return fit(self, batches)

    monkeypatch.setattr(SeriesSummary, "fit", spy)
    params = {**TINY, "classifier": kind, "head_inputs": head, "validation_fraction": 0.25}
    clf = LatentODEClassifier(**params).fit(df, y)
    assert seen == [12]  # standardised on the 12 training series, not the 4 validation ones
    model = clf.model_
    assert model.hparams["head_inputs"] == head and model.summary is not None
    assert model.classifier.n_summary == 7 * 2 and (model.classifier.wide is None) == (
        head == "latent+summary")
    assert float(model.summary.scale.min()) > 0 and float(model.summary.loc.abs().sum()) > 0
    proba = clf.predict_proba(df)
    assert np.isfinite(proba.to_numpy()).all()
    # the head does read the summaries: other statistics, other probabilities
    loc = model.summary.loc.clone()
    with torch.no_grad():
        model.summary.loc += 1.0
    assert not np.allclose(clf.predict_proba(df).to_numpy(), proba.to_numpy())
    with torch.no_grad():
        model.summary.loc.copy_(loc)
    pd.testing.assert_frame_equal(clf.predict_proba(df), proba, check_exact=True)
    twin = clone(clf)
    assert twin.get_params()["head_inputs"] == head and not hasattr(twin, "model_")
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(clf)).predict_proba(df), proba,
                                  check_exact=True)
    clf.save(tmp_path / "h.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "h.latentode")
    assert loaded.head_inputs == head
    torch.testing.assert_close(loaded.model_.summary.loc, model.summary.loc, rtol=0, atol=0)
    pd.testing.assert_frame_equal(loaded.predict_proba(df), proba, check_exact=True)
    # warm start keeps the network, so it keeps its inputs
    with pytest.raises(ValueError, match="warm_start=True needs the head_inputs of the previous"):
        clf.set_params(warm_start=True, head_inputs="latent").fit(df, y)
    clf.set_params(head_inputs=head, max_epochs=1).fit(df, y)
    assert clf.history_.n_epochs == 3 and seen == [12]  # the stored standardisation is kept


def test_head_inputs_with_a_channel_missing_from_some_series(small):
    df, y = small
    df = df.copy()
    gone = [0, 1, 9]  # series without any x1 value, in training and at prediction
    df.loc[df["id"].isin(gone), "x1"] = np.nan
    clf = LatentODEClassifier(**{**TINY, "head_inputs": "latent+summary"}).fit(df, y)
    proba = clf.predict_proba(df)
    assert np.isfinite(proba.to_numpy()).all()
    # what the head read for those series: 0 for x1's value statistics, the indicator 1
    from latentode import data as _data
    from latentode.nn.summary import SUMMARY_STATS

    vf, padded = clf._prepare(df)
    batch = next(iter(_data.iterate_batches(padded, len(vf.series_ids))))
    with torch.no_grad():
        u = clf.model_.summary(batch).view(-1, len(SUMMARY_STATS), 2)
    rows = vf.lookup_series(pd.Index(gone))
    assert (u[rows, SUMMARY_STATS.index("missing"), 1] == 1).all()
    for name in ("last", "mean", "min", "max", "since_last"):
        assert (u[rows, SUMMARY_STATS.index(name), 1] == 0).all()
    others = np.setdiff1d(np.arange(len(vf.series_ids)), rows)
    assert (u[others, SUMMARY_STATS.index("missing")] == 0).all()


def test_files_and_pickles_without_head_inputs_load_as_latent(small, tmp_path):
    df, y = small  # files saved before head_inputs existed hold the head that reads z_t0 only
    fitted = LatentODEClassifier(**{**TINY, "head_inputs": "latent"}).fit(df, y)
    old, pickled = as_saved_before(fitted, "head_inputs", tmp_path, hparam=True)
    assert old.head_inputs == "latent" and old.model_.summary is None
    pd.testing.assert_frame_equal(old.predict_proba(df), fitted.predict_proba(df),
                                  check_exact=True)
    assert pickled.head_inputs == "latent"
    pd.testing.assert_frame_equal(pickled.predict_proba(df), fitted.predict_proba(df),
                                  check_exact=True)

    # a file whose estimator and network disagree is refused
    def spoil(config):
        config["params"]["head_inputs"] = "latent+wide"

    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "bad.latentode", spoil)
    with pytest.raises(ValueError, match="head_inputs is 'latent' but params: head_inputs is"):
        LatentODEClassifier.load(tmp_path / "bad.latentode")


def test_bad_head_inputs(small):
    df, y = small
    with pytest.raises(ValueError, match="head_inputs must be one of"):
        LatentODEClassifier(**{**TINY, "head_inputs": "summary"}).fit(df, y)
    from latentode.nn import LatentODE

    with pytest.raises(ValueError, match="needs a classifier"):
        LatentODE(2, head_inputs="latent+summary")


# ------------------------------------------------------------------------------ pooled states
def test_state_pooling_numbers_ignore_unobserved_entries_and_order():
    from latentode.nn.pooling import StatePooling

    torch.manual_seed(0)
    pool = StatePooling(2, units=3)
    h = torch.tensor([[[1.0, 0.0], [5.0, 5.0]],
                      [[3.0, 2.0], [float("nan"), 1.0]],      # series 2: not observed here
                      [[-1.0, 4.0], [float("inf"), 7.0]]])    # (L=3, B=2, 2)
    obs = torch.tensor([[True, True], [True, False], [False, False]])
    out = pool(h, obs)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :2], torch.tensor([[2.0, 1.0], [5.0, 5.0]]))
    # the attention part by hand: softmax of q . tanh(W h + c) over the observed entries
    with torch.no_grad():
        s = pool.query(torch.tanh(pool.key(h[:2, 0]))).squeeze(-1)
    a = torch.softmax(s, 0)
    torch.testing.assert_close(out[0, 2:], a[0] * h[0, 0] + a[1] * h[1, 0])
    torch.testing.assert_close(out[1, 2:], h[0, 1])  # one observed entry: itself
    # the order of the entries and extra unobserved entries change nothing
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(pool(h[perm], obs[perm]), out)
    longer = torch.cat([h, torch.full((2, 2, 2), 1e6)]), torch.cat([obs, torch.zeros(2, 2,
                                                                                     dtype=bool)])
    torch.testing.assert_close(pool(*longer), out)
    # a series with no observed entry gets zeros, with finite gradients
    h2 = h.clone().requires_grad_()
    none = pool(h2, torch.zeros(3, 2, dtype=bool))
    assert float(none.detach().abs().sum()) == 0.0
    none.sum().backward()
    assert torch.isfinite(h2.grad).all() and float(h2.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="states must be"):
        pool(h, obs[:2])


@pytest.mark.parametrize("encoder", ["odernn", "gru"])
def test_pooled_states_of_the_fused_scan_and_the_reference_loop_agree(encoder):
    from latentode.nn.encoder import GRUEncoder, ODERNNEncoder
    from latentode.nn.pooling import StatePooling

    torch.manual_seed(1)
    enc = (ODERNNEncoder if encoder == "odernn" else GRUEncoder)(3, 4, 6).double()
    pool = StatePooling(6, 5).double()
    times = torch.sort(torch.rand(4, 7, dtype=torch.double), 1).values
    values = torch.randn(4, 7, 3, dtype=torch.double)
    mask = (torch.rand(4, 7, 3) > 0.4).double()
    mask[0, 2] = 0.0  # a time point without an observed channel: no update, no state
    lengths = torch.tensor([7, 5, 3, 1])
    got = []
    for fused in (True, False):
        enc.fused = fused
        enc.zero_grad()
        pool.zero_grad()
        mu, _, states, observed = enc(times, values, mask, lengths, return_states=True)
        assert observed.sum(0).tolist() == [
            int(((mask[b, :lengths[b]] > 0).any(-1)).sum()) for b in range(4)]
        pooled = pool(states, observed)
        (pooled.sin().sum() + mu.sum()).backward()
        got.append((pooled.detach(), [p.grad.clone() for p in enc.parameters()]))
    torch.testing.assert_close(got[0][0], got[1][0])
    for a, b in zip(got[0][1], got[1][1]):
        torch.testing.assert_close(a, b)
    # padding a series (a longer batch mate) leaves its pooled states unchanged
    enc.fused = True
    with torch.no_grad():
        alone = pool(*enc(times[3:, :1], values[3:, :1], mask[3:, :1], lengths[3:],
                          return_states=True)[2:])
    torch.testing.assert_close(alone[0], got[0][0][3])


@pytest.mark.parametrize("kind", ["latent", "encoder"])
def test_pooled_head_fit_predict_pad_save_load_clone(small, tmp_path, kind):
    df, y = small
    params = {**TINY, "classifier": kind, "head_inputs": "latent+summary+pooled"}
    clf = LatentODEClassifier(**params).fit(df, y)
    model = clf.model_
    assert model.pooling is not None and model.summary is not None
    assert model.classifier.n_pooled == 2 * TINY["rec_dim"]
    assert model.classifier.net[0].in_features == (TINY["latent_dim"] + 7 * 2
                                                   + 2 * TINY["rec_dim"])
    proba = clf.predict_proba(df)
    assert np.isfinite(proba.to_numpy()).all()
    # the classifier's gradient reached the pooling (it was trained: not its initial weights)
    init = LatentODEClassifier(**{**params, "max_epochs": 0}).fit(df, y).model_.pooling
    assert not torch.equal(init.query.weight, model.pooling.query.weight)
    # the head reads the pooled states
    query = model.pooling.query.weight.detach().clone()
    with torch.no_grad():
        model.pooling.query.weight.mul_(-3.0)
        changed = clf.predict_proba(df)
        model.pooling.query.weight.copy_(query)
    assert not np.allclose(changed.to_numpy(), proba.to_numpy())
    # padding: each series alone (batches of one) gets the probabilities it gets in a batch
    one = clone(clf).set_params(batch_size=1)
    one.__dict__.update({k: v for k, v in clf.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(one.predict_proba(df).to_numpy(), proba.to_numpy(), atol=1e-6)
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(clf)).predict_proba(df), proba,
                                  check_exact=True)
    clf.save(tmp_path / "p.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "p.latentode")
    assert loaded.head_inputs == "latent+summary+pooled"
    pd.testing.assert_frame_equal(loaded.predict_proba(df), proba, check_exact=True)
    assert clone(clf).get_params()["head_inputs"] == "latent+summary+pooled"


def test_latent_pooled_head_without_summaries(small):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "head_inputs": "latent+pooled"}).fit(df, y)
    assert clf.model_.summary is None and clf.model_.classifier.n_summary == 0
    assert clf.model_.classifier.n_pooled == 2 * TINY["rec_dim"]
    assert np.isfinite(clf.predict_proba(df).to_numpy()).all()


def test_soft_voting_averages_differently_seeded_classifiers(small):
    # an ensemble of fits with other random_state (docs/results/classification.md, the
    # ensemble): scikit-learn's VotingClassifier fits clones on the per-row labels and
    # averages their predict_proba
    df, y = small
    per_row = df["id"].map(y)
    members = [LatentODEClassifier(**{**PROBA, "random_state": seed}) for seed in (0, 1)]
    vote = VotingClassifier([(f"seed{k}", m) for k, m in enumerate(members)], voting="soft")
    proba = vote.fit(df, per_row).predict_proba(df)
    alone = [clone(m).fit(df, y).predict_proba(df) for m in members]  # the same fits
    assert not np.allclose(alone[0].to_numpy(), alone[1].to_numpy())
    np.testing.assert_allclose(proba, (alone[0].to_numpy() + alone[1].to_numpy()) / 2,
                               rtol=0, atol=1e-12)
    assert list(vote.classes_) == list(alone[0].columns)
    # one row per series in the order of predict_proba's index (first appearance)
    assert len(proba) == y.size
    assert (vote.predict(df) == vote.classes_[np.argmax(proba, axis=1)]).all()


def test_soft_voting_averages_an_odernn_and_an_mtan_classifier(small):
    # a heterogeneous ensemble (issue #16): members with different encoders, averaged by
    # scikit-learn's soft voting; each member is the fit it would be alone
    df, y = small
    per_row = df["id"].map(y)
    members = {"odernn": LatentODEClassifier(**{**PROBA, "encoder": "odernn"}),
               "mtan": LatentODEClassifier(**{**PROBA, "encoder": "mtan",
                                              "mtan_ref_points": 8})}
    vote = VotingClassifier(list(members.items()), voting="soft")
    proba = vote.fit(df, per_row).predict_proba(df)
    alone = {k: clone(m).fit(df, y).predict_proba(df).to_numpy() for k, m in members.items()}
    assert [m.encoder for m in vote.estimators_] == ["odernn", "mtan"]
    assert not np.allclose(alone["odernn"], alone["mtan"], atol=1e-3)
    np.testing.assert_allclose(proba, (alone["odernn"] + alone["mtan"]) / 2, rtol=0,
                               atol=1e-12)
    assert (vote.predict(df) == vote.classes_[np.argmax(proba, axis=1)]).all()
