"""scikit-learn compatibility of :class:`latentode.LatentODERegressor`.

Which of ``sklearn.utils.estimator_checks`` apply
-------------------------------------------------
The estimator takes a *long DataFrame* with named id / time columns and no ``y``, and returns
DataFrames aligned with rows, so every check that feeds a generic numpy ``X`` (and usually a
``y``) cannot apply: ``check_fit2d_*``, ``check_estimators_dtypes``, ``check_fit_score_takes_y``
(fit takes ``y`` but generic arrays have no time column), ``check_regressors_*``,
``check_estimators_pickle`` / ``check_estimators_overwrite_params`` /
``check_dont_overwrite_parameters`` / ``check_fit_idempotent`` / ``check_n_features_in`` (all
fit on numpy arrays), ``check_dict_unchanged``, ``check_methods_subset_invariance`` (a Latent
ODE conditions on the whole series, so predicting a subset of a series' rows legitimately
changes the other rows' predictions) and the sparse / NaN / inf array checks. Their intent is
covered by DataFrame-based tests below and in ``test_estimator.py`` (pickle, overwrite-params,
repeatability, bad input, caller data unchanged).

The checks that only need a constructed estimator run as is.
"""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from _settings import TINY
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as ec
from sklearn.utils.validation import check_is_fitted

from latentode import LatentODERegressor


@pytest.fixture(scope="module")
def df(make_oscillators) -> pd.DataFrame:
    return make_oscillators(n_series=8, n_points=15, span=5.0)


@pytest.mark.parametrize(
    "check",
    [
        ec.check_no_attributes_set_in_init,
        ec.check_get_params_invariance,
        ec.check_set_params,
        ec.check_parameters_default_constructible,
        ec.check_estimator_repr,
        ec.check_estimator_cloneable,
        ec.check_estimator_tags_renamed,
        ec.check_valid_tag_types,
        ec.check_do_not_raise_errors_in_init_or_set_params,
        ec.check_mixin_order,
        ec.check_estimators_unfitted,
    ],
    ids=lambda c: c.__name__,
)
def test_applicable_sklearn_checks(check):
    check("LatentODERegressor", LatentODERegressor())


def test_default_params_are_the_documented_ones():
    params = LatentODERegressor().get_params()
    assert params["encoder"] == "odernn" and params["gradient"] == "adjoint"
    assert params["solver"] == "dopri5" and params["rtol"] == 1e-3 and params["atol"] == 1e-4
    assert params["n_traj_samples"] == 3 and params["batch_size"] == 50
    assert params["validation_fraction"] == 0.1 and params["early_stopping"] is True
    assert params["poisson_process"] is False and params["obs_std"] == "learned"
    assert params["device"] == "auto" and params["random_state"] is None
    assert params["verbose"] == 1 and params["warm_start"] is False


def test_not_fitted(df):
    est = LatentODERegressor(**TINY)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        est.predict(df)


def test_fit_does_not_overwrite_params(df):
    est = LatentODERegressor(**TINY)
    before = joblib.hash(est.get_params())
    est.fit(df)
    assert joblib.hash(est.get_params()) == before
    check_is_fitted(est)


def test_fit_is_idempotent(df):
    est = LatentODERegressor(**TINY)
    first = est.fit(df).predict(df)
    pd.testing.assert_frame_equal(est.fit(df).predict(df), first, check_exact=True)


def test_clone_fitted_and_unfitted(df):
    est = LatentODERegressor(**TINY).fit(df)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(twin)
    twin.set_params(latent_dim=2, max_epochs=1)
    assert est.latent_dim == 3  # clone is independent


def test_pickle_round_trip_identical(df):
    est = LatentODERegressor(**TINY).fit(df)
    other = pickle.loads(pickle.dumps(est))
    pd.testing.assert_frame_equal(other.predict(df), est.predict(df), check_exact=True)
    pd.testing.assert_frame_equal(other.extrapolate(df, n_points=3),
                                  est.extrapolate(df, n_points=3), check_exact=True)
    assert other.score(df) == est.score(df)
    assert other.history_.to_dict() == est.history_.to_dict()
    # the network travels as a state dict, not as a pickled module
    state = est.__getstate__()
    assert isinstance(state["model_"], dict) and "state_dict" in state["model_"]
    # unfitted estimators pickle too
    assert pickle.loads(pickle.dumps(LatentODERegressor(**TINY))).get_params() == TINY | {
        k: v for k, v in LatentODERegressor().get_params().items() if k not in TINY}


def test_pipeline_routes_fit_params(df):
    renamed = df.rename(columns={"id": "stay", "t": "hours"})
    pipe = Pipeline([("identity", FunctionTransformer()), ("est", LatentODERegressor(**TINY))])
    pipe.fit(renamed, est__time_col="hours", est__id_col="stay", est__target_cols=["x"])
    est = pipe.named_steps["est"]
    assert est.time_col_ == "hours" and est.id_col_ == "stay" and est.target_cols_ == ["x"]
    pred = pipe.predict(renamed)
    assert list(pred.columns) == ["stay", "hours", "x"] and len(pred) == len(renamed)
    assert np.isfinite(pipe.score(renamed))


def test_cross_val_score_group_kfold(df):
    scores = cross_val_score(LatentODERegressor(**TINY), df, groups=df["id"], cv=GroupKFold(2))
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_grid_search_group_kfold(df):
    search = GridSearchCV(LatentODERegressor(**TINY), {"latent_dim": [2, 3]}, cv=GroupKFold(2))
    search.fit(df, groups=df["id"])
    assert search.best_params_["latent_dim"] in (2, 3)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    pred = search.predict(df)
    assert len(pred) == len(df)


def test_metadata_routing_does_not_list_the_frame(df):
    """``df`` is the data (scikit-learn exempts only ``X`` / ``y`` by name): it is not metadata
    of fit, predict, score or predict_proba (it was listed, so ``set_fit_request(df=True)``
    was accepted); the real keyword arguments still route."""
    import sklearn
    from sklearn.model_selection import cross_validate

    from latentode import LatentODEClassifier

    for est in (LatentODERegressor(), LatentODEClassifier()):
        routing = est.get_metadata_routing()
        for method in ("fit", "predict", "predict_proba", "score"):
            assert "df" not in getattr(routing, method).requests, method
        assert "time_col" in routing.fit.requests
    assert "quantiles" in LatentODERegressor().get_metadata_routing().predict.requests
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(TypeError, match="Unexpected args: {'df'} in fit"):
            LatentODERegressor().set_fit_request(df=True)
        renamed = df.rename(columns={"t": "hours"})
        est = LatentODERegressor(**TINY).set_fit_request(time_col=True)
        res = cross_validate(est, renamed, cv=GroupKFold(2),
                             params={"groups": renamed["id"], "time_col": "hours"})
        assert np.isfinite(res["test_score"]).all()


def test_not_a_scikit_learn_regressor(df):
    """``estimator_type`` stays None: ``predict`` returns a long frame of every target, not
    one value per row of ``X`` for a ``y``, and ``score`` is a log-likelihood, not R^2. So
    ``VotingRegressor`` / ``StackingRegressor`` refuse it plainly; tagged "regressor", they
    accepted it and failed inside (averaging a frame with string ids)."""
    from sklearn.base import is_regressor
    from sklearn.ensemble import StackingRegressor, VotingRegressor

    assert not is_regressor(LatentODERegressor())
    y = np.zeros(len(df))
    for ensemble in (VotingRegressor([("a", LatentODERegressor(**TINY))]),
                     StackingRegressor([("a", LatentODERegressor(**TINY))])):
        with pytest.raises(ValueError, match="should be a regressor"):
            ensemble.fit(df, y)
