"""Validation split by groups of related series (``fit(..., group_col=)``,
``split_series(..., groups=)``): no group on both sides, sizes, errors, the former split kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _settings import TINY

import latentode.data
from latentode import LatentODEClassifier, LatentODERegressor
from latentode.data import series_groups, split_series, validate_frame


@pytest.mark.parametrize("n", [1, 2, 3, 10, 37, 300])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.5, 0.9])
def test_singleton_groups_give_the_former_split(n, fraction):
    for seed in range(4):
        old = split_series(n, fraction, np.random.default_rng(seed))
        # any labels, one per series (here decreasing, so not in order of value)
        new = split_series(n, fraction, np.random.default_rng(seed),
                           groups=(np.arange(n)[::-1] * 7).astype(str))
        for a, b in zip(old, new):
            np.testing.assert_array_equal(a, b)
        strata = np.arange(n) % 3 == 0
        old = split_series(n, fraction, np.random.default_rng(seed), strata=strata)
        new = split_series(n, fraction, np.random.default_rng(seed), strata=strata,
                           groups=np.arange(n))
        for a, b in zip(old, new):
            np.testing.assert_array_equal(a, b)


def test_groups_stay_on_one_side_and_count_groups():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 5, size=40)  # 40 groups of 1 to 4 series, shuffled
    groups = rng.permutation(np.repeat(np.arange(40) * 10, sizes))
    for seed in range(10):
        train, val = split_series(len(groups), 0.2, seed, groups=groups)
        assert sorted([*train, *val]) == list(range(len(groups)))
        assert not set(groups[train]) & set(groups[val])
        assert len(set(groups[val])) == 8  # round(0.2 * 40) groups
        assert len(set(groups[train])) == 32
    # the calibration suite's make-up: 150 series and their 150 copies
    pairs = np.concatenate([np.arange(150), np.arange(150)])
    train, val = split_series(300, 0.1, 3, groups=pairs)
    assert len(val) == 30 and len(train) == 270
    assert np.array_equal(np.sort(pairs[val[:15]]), np.sort(pairs[val[15:]]))
    # the clipping applies to groups: one group for validation at least, one for training
    train, val = split_series(6, 0.01, 0, groups=[0, 0, 0, 1, 1, 1])
    assert len(val) == 3 and len(train) == 3
    train, val = split_series(4, 0.5, 0, groups=[5, 5, 5, 5])
    assert val.size == 0 and train.tolist() == [0, 1, 2, 3]


def test_groups_within_strata():
    strata = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    for seed in range(5):
        train, val = split_series(10, 0.4, seed, strata=strata, groups=groups)
        assert not set(groups[train]) & set(groups[val])
        # each stratum keeps its share: round(0.4 * 2) = 1 group and round(0.4 * 3) = 1
        assert sorted(strata[val].tolist()) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="Group 1 holds series of several strata"):
        split_series(10, 0.4, 0, strata=strata, groups=[0, 0, 1, 1, 1, 2, 3, 3, 4, 4])
    with pytest.raises(ValueError, match=r"one label per series \(10\), got shape \(9,\)"):
        split_series(10, 0.4, 0, groups=np.zeros(9))


@pytest.fixture(scope="module")
def grouped(make_oscillators) -> pd.DataFrame:
    """20 series: 10 oscillators and a truncated copy of each, the pair sharing a patient."""
    frame = make_oscillators(n_series=10, n_points=12)
    copy = frame[frame["t"] < 3.0].copy()
    copy["id"] = copy["id"] + "c"
    out = pd.concat([frame, copy], ignore_index=True)
    out["patient"] = out["id"].str.rstrip("c").str[1:].astype(int) * 100
    return out


def test_series_groups_reads_one_value_per_series(grouped):
    vf = validate_frame(grouped, time_col="t", id_col="id", target_cols=["x", "v"])
    codes = series_groups(grouped, vf, "patient")
    patients = grouped.groupby("id")["patient"].first().reindex(vf.series_ids).to_numpy()
    # codes in order of first appearance, equal exactly where the patients are
    assert codes.max() == 9 and codes[0] == 0
    assert (codes[:, None] == codes[None, :]).tolist() == (
        patients[:, None] == patients[None, :]).tolist()
    # the id column: every series its own group
    assert series_groups(grouped, vf, "id").tolist() == list(range(20))


@pytest.mark.parametrize("edit, col, match", [
    (lambda d: d.assign(patient=np.where(d["id"].eq("s3") & (d["t"] > 2), 7, d["patient"])),
     "patient", r"Group column 'patient' varies within series 's3' \(column 'id'\): 300, 7"),
    (lambda d: d.assign(patient=d["patient"].where(~d["id"].eq("s4c"))),
     "patient", r"Group column 'patient' has no value for series 's4c' \(column 'id'\)"),
    (lambda d: d, "nope", "Unknown group column 'nope'"),
    (lambda d: d, "t", "Group column 't' is the time column"),
    (lambda d: d, "x", "'x' is both the group column and a target column"),
])
def test_group_col_errors_name_the_series(grouped, edit, col, match):
    est = LatentODERegressor(**TINY)
    with pytest.raises(ValueError, match=match):
        est.fit(edit(grouped), target_cols=["x", "v"], group_col=col)
    assert not hasattr(est, "model_")  # raised before training


def test_missing_rows_are_ignored(grouped):
    df = grouped.assign(patient=grouped["patient"].where(grouped["t"] < 4.0))  # late rows: NaN
    vf = validate_frame(df, time_col="t", id_col="id", target_cols=["x", "v"])
    np.testing.assert_array_equal(series_groups(df, vf, "patient"),
                                  series_groups(grouped, vf, "patient"))


def _spy(monkeypatch) -> list:
    calls: list = []
    real = latentode.data.split_series

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((kwargs.get("groups"), out))
        return out
    monkeypatch.setattr(latentode.data, "split_series", spy)
    return calls


def test_fit_keeps_each_patient_on_one_side(grouped, monkeypatch):
    calls = _spy(monkeypatch)
    est = LatentODERegressor(**TINY, validation_fraction=0.3).fit(grouped, group_col="patient")
    # the group column is no target (left out of the automatic targets)
    assert est.target_cols_ == ["x", "v"]
    (groups, (train, val)), = calls
    assert len(val) == 6 and len(train) == 14  # round(0.3 * 10) = 3 patients of 2 series
    assert not set(groups[train]) & set(groups[val])
    pred = est.predict(grouped.drop(columns="patient"))
    assert pred[["x", "v"]].notna().all().all() and len(pred) == len(grouped)
    # without group_col (and the column out of the frame), the former split: 6 series drawn
    # among all, here separating pairs
    calls.clear()
    LatentODERegressor(**TINY, validation_fraction=0.3).fit(grouped.drop(columns="patient"))
    (none, (train2, val2)), = calls
    assert none is None and len(val2) == 6
    ids = np.array(sorted(grouped["id"].unique()))  # the series' order in the fit
    patients = np.array([int(i.rstrip("c")[1:]) for i in ids])
    assert set(patients[train2]) & set(patients[val2])


def test_fit_with_the_id_as_group_is_the_former_fit(grouped):
    df = grouped.drop(columns="patient")
    a = LatentODERegressor(**TINY, validation_fraction=0.3).fit(df)
    b = LatentODERegressor(**TINY, validation_fraction=0.3).fit(df, group_col="id")
    assert a.history_.best_val_loss == b.history_.best_val_loss is not None
    pa, pb = a.predict(df), b.predict(df)
    np.testing.assert_array_equal(pa[["x", "v"]].to_numpy(), pb[["x", "v"]].to_numpy())


def test_classifier_groups(grouped, monkeypatch):
    labels = pd.Series({i: int(i.rstrip("c")[1:]) % 2 for i in grouped["id"].unique()})
    calls = _spy(monkeypatch)
    clf = LatentODEClassifier(**TINY, classifier="encoder", validation_fraction=0.3)
    clf.fit(grouped, labels, group_col="patient")
    (groups, (train, val)), = calls
    assert len(val) == 6 and not set(groups[train]) & set(groups[val])
    assert clf.predict_proba(grouped).shape == (20, 2)
    # semi-supervised: a patient with a labelled and an unlabelled stay is refused
    partial = labels.copy()
    partial["s2c"] = np.nan
    semi = LatentODEClassifier(**TINY, semi_supervised=True, validation_fraction=0.3)
    with pytest.raises(ValueError, match=r"Group 200 \(column 'patient'\) holds series 's2' "
                                         r"and 's2c'.*labelled and unlabelled"):
        semi.fit(grouped, partial, group_col="patient")


def test_mixed_groups_names_the_groups_spanning_strata():
    from latentode.data.loader import mixed_groups

    codes = np.array([0, 0, 1, 1, 2, 3, 3])
    strata = np.array(["a", "b", "a", "a", "b", "b", "a"])
    np.testing.assert_array_equal(mixed_groups(codes, strata), [0, 3])
    assert mixed_groups(codes, np.zeros(7)).size == 0
    assert mixed_groups(np.empty(0, dtype=np.int64), np.empty(0)).size == 0
