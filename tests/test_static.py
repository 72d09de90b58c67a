"""Static covariates (``static_cols=``): encoding, errors, use by the model, persistence."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from _settings import TINY
from sklearn.metrics import roc_auc_score

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.data import StaticEncoder, series_static, validate_frame
from latentode.io import read_config

FAST = {**TINY, "classifier": "encoder", "rec_dim": 12, "units": 24, "gru_units": 16,
        "latent_dim": 4, "batch_size": 20}


@pytest.fixture(scope="module")
def df(make_oscillators) -> pd.DataFrame:
    """Oscillators with an age (numeric, on the first row only; missing for s3), a sex
    (strings on every row) and an ICU type (category)."""
    frame = make_oscillators(n_series=10, n_points=12)
    ids = pd.unique(frame["id"])
    rng = np.random.default_rng(0)
    first = ~frame["id"].duplicated()
    frame["age"] = np.where(first, frame["id"].map(dict(zip(ids, rng.normal(60, 10, 10)))),
                            np.nan)
    frame.loc[frame["id"] == "s3", "age"] = np.nan
    frame["sex"] = frame["id"].map(dict(zip(ids, ["f", "m"] * 5))).astype(object)
    frame["icu"] = pd.Categorical(frame["id"].map(dict(zip(ids, [1, 2, 3, 4, 1] * 2))))
    return frame


@pytest.fixture(scope="module")
def fitted(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(df, target_cols=["x", "v"],
                                          static_cols=["age", "sex", "icu"])


def test_encoding_numbers(df):
    vf = validate_frame(df, time_col="t", id_col="id", target_cols=["x", "v"])
    values = series_static(df, vf, ["age", "sex", "icu"])
    assert values["age"].isna().tolist() == [i == "s3" for i in vf.series_ids]
    enc = StaticEncoder().fit(values)
    assert enc.feature_names == ["age", "age_missing", "sex=f", "sex=m", "icu=1", "icu=2",
                                 "icu=3", "icu=4"]
    x = enc.transform(values)
    ages = values["age"].dropna()
    ok = values["age"].notna().to_numpy()
    np.testing.assert_allclose(x[ok, 0], (ages - ages.mean()) / ages.std(ddof=0))
    assert x[~ok, 0].tolist() == [0.0] and x[:, 1].tolist() == (~ok).astype(float).tolist()
    assert (x[:, 2:4].sum(axis=1) == 1).all() and (x[:, 4:].sum(axis=1) == 1).all()
    back = StaticEncoder.from_dict(enc.to_dict())
    np.testing.assert_array_equal(back.transform(values), x)


def test_the_fit_uses_them_and_never_reconstructs_them(fitted, df):
    assert fitted.target_cols_ == ["x", "v"] and fitted.static_cols_ == ["age", "sex", "icu"]
    assert list(fitted.feature_names_in_) == ["id", "t", "x", "v", "age", "sex", "icu"]
    assert fitted.model_.n_static == 8 and fitted.model_.n_channels == 2
    pred = fitted.predict(df)
    assert list(pred.columns) == ["id", "t", "x", "v"]
    # the posterior of z_t0 depends on the covariates: another sex changes the prediction
    other = df.assign(sex=df["sex"].map({"f": "m", "m": "f"}))
    assert not np.allclose(fitted.predict(other)[["x", "v"]], pred[["x", "v"]])
    # inferred targets leave static columns out
    auto = LatentODERegressor(**TINY).fit(df.drop(columns=["sex", "icu"]), static_cols=["age"])
    assert auto.target_cols_ == ["x", "v"]


def test_varying_value_names_the_series_and_column(df):
    bad = df.copy()
    bad.loc[bad.index[(bad["id"] == "s4").to_numpy()][-1], "sex"] = "m"
    with pytest.raises(ValueError, match=r"Static column 'sex' varies within series 's4' "
                                         r"\(column 'id'\): 'f', 'm'"):
        LatentODERegressor(**TINY).fit(bad, target_cols=["x", "v"], static_cols=["sex"])


@pytest.mark.parametrize(
    "static_cols, target_cols, match",
    [
        (["weight"], ["x", "v"], "Unknown static column 'weight'"),
        (["x"], ["x", "v"], "'x' is both a static column and a target column"),
        (["t"], ["x", "v"], "Static column 't' is the time column"),
        (["age", "age"], ["x", "v"], "listed more than once"),
        ("age", ["x", "v"], "static_cols must be a list of column names"),
    ],
)
def test_bad_static_cols(df, static_cols, target_cols, match):
    with pytest.raises(ValueError, match=match):
        LatentODERegressor(**TINY).fit(df, target_cols=target_cols, static_cols=static_cols)


def test_unsavable_categories_name_the_column(df):
    admitted = df.assign(admitted=df["id"].map(
        dict(zip(pd.unique(df["id"]), pd.date_range("2020-01-01", periods=10)))))
    with pytest.raises(ValueError, match=r"Static column 'admitted' has the category "
                                         r"Timestamp\('2020-01-01 00:00:00'\) \(Timestamp\): "
                                         "categories must be strings, numbers or booleans"):
        LatentODERegressor(**TINY).fit(admitted, target_cols=["x", "v"],
                                       static_cols=["admitted"])


def test_prediction_time_errors_and_missing_values(fitted, df):
    new = df.assign(icu=df["icu"].astype(int).replace({4: 9}))
    with pytest.raises(ValueError, match="Static column 'icu' has the category 9 for series "
                                         "'s3' .* which fit never saw"):
        fitted.predict(new)
    with pytest.raises(ValueError, match="Missing static column"):
        fitted.predict(df.drop(columns="age"))
    # age was missing in training: a missing age is the indicator, silently
    pred = fitted.predict(df.assign(age=np.nan))
    assert np.isfinite(pred[["x", "v"]].to_numpy()).all()
    # sex was never missing in training: encoded as no category, with a warning
    blank = df.assign(sex=np.where(df["id"] == "s0", None, df["sex"]))
    with pytest.warns(UserWarning, match=r"Static column 'sex' has no value for 1 series "
                                         r"\('s0' \(column 'id'\)\)"):
        fitted.predict(blank)


def test_saved_and_pickled_with_the_model(fitted, df, tmp_path):
    expected = fitted.predict(df)
    fitted.save(tmp_path / "m.latentode")
    assert read_config(tmp_path / "m.latentode")["fitted"]["static_cols_"] == ["age", "sex", "icu"]
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    pd.testing.assert_frame_equal(loaded.predict(df), expected, check_exact=True)
    assert loaded.static_encoder_.feature_names == fitted.static_encoder_.feature_names
    again = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(again.predict(df), expected, check_exact=True)
    # without static columns, the file has none of the new keys (older readers' layout)
    plain = LatentODERegressor(**TINY).fit(df, target_cols=["x", "v"])
    plain.save(tmp_path / "p.latentode")
    config = read_config(tmp_path / "p.latentode")
    assert "static_encoder" not in config and "static_cols_" not in config["fitted"]


def test_classifier_reads_the_static_covariates(make_oscillators):
    """The label is the sex alone, which no time series shows: learnt through static_cols."""
    frame = make_oscillators(n_series=80, n_points=10, seed=3)
    ids = pd.unique(frame["id"])
    sex = pd.Series(np.where(np.arange(len(ids)) % 2 == 0, "f", "m"), index=ids)
    frame["sex"] = frame["id"].map(sex).astype(object)
    y = (sex == "f").astype(int)
    clf = LatentODEClassifier(**{**FAST, "max_epochs": 15, "validation_fraction": 0.0,
                                 "early_stopping": False})
    clf.fit(frame, y, target_cols=["x", "v"], static_cols=["sex"])
    proba = clf.predict_proba(frame)
    assert roc_auc_score(y.loc[proba.index], proba[1]) > 0.99
    blind = LatentODEClassifier(**{**FAST, "max_epochs": 15, "validation_fraction": 0.0,
                                   "early_stopping": False}).fit(frame, y, target_cols=["x", "v"])
    proba = blind.predict_proba(frame)
    assert roc_auc_score(y.loc[proba.index], proba[1]) < 0.9  # chance, up to memorising


def test_warm_start_needs_the_same_static_columns(df):
    est = LatentODERegressor(**{**TINY, "warm_start": True}).fit(
        df, target_cols=["x", "v"], static_cols=["age"])
    with pytest.raises(ValueError, match="same static columns"):
        est.fit(df, target_cols=["x", "v"], static_cols=["sex"])
    est.fit(df, target_cols=["x", "v"], static_cols=["age"])
    assert est.history_.n_epochs == 4
