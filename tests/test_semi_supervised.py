"""Semi-supervised training of ``LatentODEClassifier`` (``semi_supervised=True``).

Series without a label train the ELBO only: their cross-entropy is exactly 0 and the batch's
cross-entropy is averaged over its labelled series (nn layer); they are left out of the
validation scores (training layer), of ``classes_`` and ``class_weight``, and split for
validation apart from the labelled series (estimator).
"""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY, rewrite_saved_config
from sklearn.base import clone
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_score
from test_classifier import oscillator_classes

from latentode import LatentODEClassifier
from latentode.batch import UNLABELLED, Batch
from latentode.data import split_series
from latentode.datasets import PHYSIONET_PARAMETERS, load_physionet2012
from latentode.nn import LatentODE
from latentode.nn.classifier import labelled_mean, weighted_cross_entropy
from latentode.training.metrics import binary_roc_auc, evaluate_classifier
from latentode.utils import torch_threads

SEMI = {**TINY, "semi_supervised": True}


@pytest.fixture(scope="module")
def small():
    """16 labelled series (8 per class, ids 0..15)."""
    return oscillator_classes(8)


@pytest.fixture(scope="module")
def extra():
    """16 more series of the same two kinds (ids 100..115), to be given without labels."""
    df, _ = oscillator_classes(8, seed=20)
    return df.assign(id=df["id"] + 100)


def _state(clf):
    return {k: v.clone() for k, v in clf.model_.state_dict().items()}


# ------------------------------------------------------------------------------ nn layer
def test_cross_entropy_of_an_unlabelled_series_is_exactly_zero_with_no_gradient():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.0], [30.0, -30.0]], requires_grad=True)
    labels = torch.tensor([0, 1, UNLABELLED])
    ce = weighted_cross_entropy(logits, labels, torch.tensor([1.0, 2.0, 5.0]))
    expected = [np.log1p(np.exp(-2.0)), 2.0 * np.log1p(np.exp(-0.5))]
    np.testing.assert_allclose(ce[:2].detach().numpy(), expected, rtol=1e-6)
    assert ce[2].item() == 0.0
    mean = labelled_mean(ce, labels)
    assert mean.item() == pytest.approx(sum(expected) / 2, rel=1e-6)  # / 2 labelled, not / 3
    mean.backward()
    assert logits.grad[2].abs().sum().item() == 0.0 and logits.grad[:2].abs().sum() > 0
    # a batch without a labelled series has no cross-entropy
    assert labelled_mean(torch.zeros(2), torch.tensor([UNLABELLED, UNLABELLED])).item() == 0.0


def _batch(n: int, labels: list[int]) -> Batch:
    """The first ``n`` of four fixed series, with ``labels``."""
    values = torch.randn(4, 6, 1, generator=torch.Generator().manual_seed(0))[:n]
    return Batch(torch.linspace(0, 1, 6).repeat(n, 1), values, torch.ones(n, 6, 1),
                 torch.full((n,), 6), labels=torch.tensor(labels),
                 weights=torch.tensor([1.0, 3.0, 1.0, 1.0][:n]))


def _model() -> LatentODE:
    torch.manual_seed(0)
    return LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1, gru_units=4,
                     encoder="gru", method="rk4", step_size=0.25, gradient="backprop",
                     n_classes=2)


@pytest.mark.parametrize("elbo", [True, False], ids=["latent", "encoder"])
def test_the_loss_averages_the_cross_entropy_over_the_labelled_series_only(elbo):
    """The CE part of a batch with 2 labelled and 2 unlabelled series is that of the batch of
    its 2 labelled series (value and gradient): the unlabelled ones neither add to the sum nor
    to the count."""
    model = _model()
    full, part = _batch(4, [0, 1, UNLABELLED, UNLABELLED]), _batch(2, [0, 1])
    noise = model.draw_z0_noise(3, 4, torch.Generator().manual_seed(1))

    def ce_part(batch, z):
        model.zero_grad()
        if not elbo:
            out = model.loss(batch, 3, elbo=False)
            out.loss.backward()
            return out.loss.item(), model.classifier.net[0].weight.grad.clone()
        with_ce = model.loss(batch, 3, z0_noise=z, ce_weight=10.0).loss
        without = model.loss(batch, 3, z0_noise=z).loss
        (with_ce - without).backward()
        return (with_ce - without).item(), model.classifier.net[0].weight.grad.clone()

    value_full, grad_full = ce_part(full, noise)
    value_part, grad_part = ce_part(part, noise[:, :2])
    assert value_full == pytest.approx(value_part, rel=1e-5) and value_full > 0
    torch.testing.assert_close(grad_full, grad_part, rtol=1e-5, atol=1e-7)


def test_validation_scores_leave_unlabelled_series_out():
    model = _model()
    labelled, mixed = _batch(2, [0, 1]), _batch(4, [0, 1, UNLABELLED, UNLABELLED])
    a = evaluate_classifier(model, [labelled, labelled])
    b = evaluate_classifier(model, [mixed, mixed])
    assert a["n_series"] == b["n_series"] == 4.0
    assert b["log_loss"] == pytest.approx(a["log_loss"], rel=1e-12)
    assert b["roc_auc"] == pytest.approx(a["roc_auc"], rel=1e-12)
    none = evaluate_classifier(model, [_batch(2, [UNLABELLED, UNLABELLED])])
    assert none["n_series"] == 0.0 and np.isnan(none["log_loss"]) and np.isnan(none["roc_auc"])


def test_roc_auc_with_a_mask_scores_the_kept_entries_as_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.random(40)
    scores[:6] = 0.5  # ties
    labels = rng.integers(0, 2, 40)
    keep = rng.random(40) < 0.6
    got = binary_roc_auc(torch.tensor(scores), torch.tensor(labels), torch.tensor(keep))
    assert got.item() == pytest.approx(roc_auc_score(labels[keep], scores[keep]), abs=1e-12)


# ------------------------------------------------------------------------------ data layer
def test_split_series_splits_each_stratum_on_its_own():
    strata = np.r_[np.zeros(30, bool), np.ones(70, bool)]
    train, val = split_series(100, 0.1, np.random.default_rng(0), strata=strata)
    assert (strata[val] == 0).sum() == 3 and (strata[val] == 1).sum() == 7
    assert sorted(np.r_[train, val].tolist()) == list(range(100))
    # one stratum (or none) is the plain split, draw for draw
    for one in (None, np.zeros(100, bool)):
        a = split_series(100, 0.1, np.random.default_rng(5), strata=one)
        b = split_series(100, 0.1, np.random.default_rng(5))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="one group per series"):
        split_series(10, 0.1, 0, strata=np.zeros(9))


# ------------------------------------------------------------------------------ estimator
def test_fully_labelled_semi_supervised_fit_is_the_supervised_fit(small):
    df, y = small
    sup = LatentODEClassifier(**TINY).fit(df, y)
    semi = LatentODEClassifier(**SEMI).fit(df, y)
    assert semi.history_["train_loss"] == sup.history_["train_loss"]
    assert semi.history_["val_log_loss"] == sup.history_["val_log_loss"]
    for k, v in _state(sup).items():
        torch.testing.assert_close(_state(semi)[k], v, rtol=0, atol=0)


def test_unlabelled_series_train_the_encoder_but_not_the_classes(small, extra):
    df, y = small
    both = pd.concat([df, extra], ignore_index=True)
    # weights, classes and histories are compared: no interval calibration
    tiny, semi_ = {**TINY, "calibrate": False}, {**SEMI, "calibrate": False}
    sup = LatentODEClassifier(**tiny).fit(df, y)
    semi = LatentODEClassifier(**semi_).fit(both, y)  # no entry for ids 100..115
    np.testing.assert_array_equal(semi.classes_, sup.classes_)
    assert semi.classes_.dtype == sup.classes_.dtype  # ints stay ints
    enc = [k for k in _state(sup) if k.startswith("encoder.")]
    assert enc and any(not torch.equal(_state(semi)[k], _state(sup)[k]) for k in enc)
    assert sup.history_["val_log_loss"][-1] != semi.history_["val_log_loss"][-1]
    # NaN labels and missing entries are the same thing, in either form of y
    nan_y = pd.concat([y.astype(float), pd.Series(np.nan, index=extra["id"].unique())])
    per_row = both["id"].map(y)  # NaN on the rows of the unlabelled series
    for other in (nan_y, per_row):
        again = LatentODEClassifier(**semi_).fit(both, other)
        assert again.history_["train_loss"] == semi.history_["train_loss"]
    # a nullable integer dtype keeps integer classes with pd.NA
    assert LatentODEClassifier(**semi_).fit(both, nan_y.astype("Int64")).classes_.dtype.kind == "i"


def test_validation_split_keeps_labelled_series_and_scores_only_them(small, extra):
    """Few labelled series among many unlabelled: the labelled ones are split for validation on
    their own (2 of 16 at 10 %), so the validation log-loss exists, and it is the one of the
    labelled validation series alone (checked by a callback against sklearn)."""
    df, y = small
    both = pd.concat([df, extra, extra.assign(id=extra["id"] + 100)], ignore_index=True)
    seen = {}

    class Grab:
        def on_epoch_end(self, epoch, record, model):
            seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
            return False

    clf = LatentODEClassifier(**{**SEMI, "max_epochs": 1, "callbacks": [Grab()]}).fit(both, y)
    recorded = clf.history_["val_log_loss"][0]
    assert np.isfinite(recorded)
    clf.model_.load_state_dict(seen[0])  # the weights the validation scored
    proba = clf.predict_proba(df)[1]
    losses = {i: log_loss([y[i]], [[1 - proba[i], proba[i]]], labels=[0, 1]) for i in y.index}
    pairs = [(a, b) for a in range(16) for b in range(a + 1, 16)
             if np.isclose((losses[a] + losses[b]) / 2, recorded, rtol=1e-5)]
    assert len(pairs) >= 1  # the mean over two labelled series: round(0.1 * 16) validate


def test_class_weight_balanced_counts_the_labelled_series_only(small, extra):
    df, y = small
    y6 = y.loc[[0, 1, 2, 3, 8, 9]]  # 4 of class 0, 2 of class 1; 10 + 16 series unlabelled
    both = pd.concat([df, extra], ignore_index=True)
    clf = LatentODEClassifier(**{**SEMI, "class_weight": "balanced"})
    vf, _ = _validated(clf, both)
    codes, classes, weights = clf._series_labels(both, vf, y6)
    assert (codes == UNLABELLED).sum() == 26 and list(classes) == [0, 1]
    labelled = codes != UNLABELLED
    np.testing.assert_allclose(weights[labelled & (codes == 0)], 6 / (2 * 4))
    np.testing.assert_allclose(weights[labelled & (codes == 1)], 6 / (2 * 2))
    assert (weights[~labelled] == 0).all()


def _validated(clf, df):
    from latentode import data as _data

    return _data.validate_frame(df, time_col="t", id_col="id", empty_series="drop"), None


@pytest.mark.parametrize(
    ("make_y", "params", "match"),
    [
        (lambda y: y.astype(float).where(y.index % 3 > 0), {},
         r"no label for 6 series of df: 0, 3, 6.*semi_supervised=True"),
        (lambda y: y.replace(0, -1), {"semi_supervised": True}, "label -1 .* ambiguous"),
        (lambda y: y.astype(object).where(y.index % 3 > 0, -1), {"semi_supervised": True},
         "label -1 .* ambiguous"),
        (lambda y: y * np.nan, {"semi_supervised": True}, "no label for any of the 16"),
        (lambda y: y.where(y == 1), {"semi_supervised": True},
         r"single class \(1.0\) among the 8 labelled series \(8 unlabelled\)"),
        (lambda y: y.astype(float).where(y.index % 3 > 0),
         {"semi_supervised": True, "classifier": "encoder"}, "needs classifier='latent'"),
        (lambda y: pd.concat([y, pd.Series([1], index=[99])]), {"semi_supervised": True},
         "labels for series 99 that are not in df"),
        (lambda y: y.astype(float).where(y.index % 3 > 0),
         {"semi_supervised": True, "scoring": "roc_auc", "validation_fraction": 0.5},
         None),
    ],
    ids=["missing-by-default", "minus-one", "minus-one-object", "none-labelled",
         "single-labelled-class", "encoder-only", "unknown-id", "roc-auc-ok"],
)
def test_label_errors(small, make_y, params, match):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "max_epochs": 1, **params})
    if match is None:
        assert np.isfinite(clf.fit(df, make_y(y)).history_["val_roc_auc"][0])
        return
    with pytest.raises(ValueError, match=match):
        clf.fit(df, make_y(y))
    assert not hasattr(clf, "classes_")  # raised before training


def test_minus_one_is_a_class_without_semi_supervised(small):
    df, y = small
    assert list(LatentODEClassifier(**TINY).fit(df, y.replace(0, -1)).classes_) == [-1, 1]


def test_bad_frames_still_give_the_regressors_errors(small):
    df, y = small
    bad = df.assign(t=np.where(np.arange(len(df)) == 3, np.nan, df["t"]))
    with pytest.raises(ValueError) as plain:
        LatentODEClassifier(**TINY).fit(bad, y)
    with pytest.raises(ValueError) as semi:
        LatentODEClassifier(**SEMI).fit(bad, y.where(y.index > 2))
    assert str(semi.value) == str(plain.value)


def test_semi_supervised_clone_pickle_save_load_and_group_cv(small, extra, tmp_path):
    df, y = small
    both = pd.concat([df, extra], ignore_index=True)
    semi_ = {**SEMI, "calibrate": False}  # predict_proba, score and the parameter: no intervals
    clf = LatentODEClassifier(**semi_).fit(both, y)
    expected = clf.predict_proba(both)
    assert clone(clf).get_params()["semi_supervised"] is True
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(clf)).predict_proba(both), expected,
                                  check_exact=True)
    clf.save(tmp_path / "semi.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "semi.latentode")
    assert loaded.semi_supervised is True
    pd.testing.assert_frame_equal(loaded.predict_proba(both), expected, check_exact=True)
    # score counts the labelled series only
    pred = clf.predict(df)
    assert clf.score(both, y) == pytest.approx(np.mean(pred.to_numpy() == y.loc[pred.index]))
    # cross-validation: per-row labels with NaN for the unlabelled series, ids as groups
    per_row = both["id"].map(y)
    scores = cross_val_score(LatentODEClassifier(**semi_), both, per_row, groups=both["id"],
                             cv=GroupKFold(2))
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_files_and_pickles_from_before_semi_supervised_load(small, tmp_path):
    df, y = small
    clf = LatentODEClassifier(**TINY).fit(df, y)
    state = clf.__getstate__()
    del state["semi_supervised"]
    old = LatentODEClassifier.__new__(LatentODEClassifier)
    old.__setstate__(state)
    assert old.semi_supervised is False
    clf.save(tmp_path / "new.latentode")
    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "old.latentode",
                         lambda config: config["params"].pop("semi_supervised"))
    loaded = LatentODEClassifier.load(tmp_path / "old.latentode")
    assert loaded.semi_supervised is False
    pd.testing.assert_frame_equal(loaded.predict_proba(df), clf.predict_proba(df),
                                  check_exact=True)


# ------------------------------------------------------------------------------ benchmark
def _write_archive(root, n_a: int = 30, n_b: int = 10) -> None:
    """A tiny PhysioNet-format folder: set-a with Outcomes-a.txt, set-b *without* outcomes."""
    rng = np.random.default_rng(0)
    outcomes = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
    for part, first, n in (("a", 132539, n_a), ("b", 142675, n_b)):
        (root / f"set-{part}").mkdir(parents=True)
        for k in range(n):
            rid = first + k
            died = int(k % 3 == 0)
            lines = ["Time,Parameter,Value", f"00:00,RecordID,{rid}",
                     f"00:00,Age,{rng.integers(30, 90)}", "00:00,Gender,1", "00:00,Height,170",
                     "00:00,ICUType,2", "00:00,Weight,80"]
            for name in PHYSIONET_PARAMETERS[5:]:  # every channel once (the benchmark's targets)
                lines.append(f"{rng.integers(1, 47):02d}:15,{name},{rng.uniform(1, 100):.1f}")
            for h in range(0, 24, 3):
                hr = 70 + 30 * died + rng.normal(0, 5)
                lines.append(f"{h:02d}:{rng.integers(0, 60):02d},HR,{hr:.1f}")
                lines.append(f"{h:02d}:30,Temp,{37 + rng.normal(0, 0.5):.1f}")
            (root / f"set-{part}" / f"{rid}.txt").write_text("\n".join(lines) + "\n")
            if part == "a":
                outcomes.append(f"{rid},10,5,8,-1,{died}")
    (root / "Outcomes-a.txt").write_text("\n".join(outcomes) + "\n")


def test_benchmark_adds_set_b_without_its_labels(tmp_path, capsys):
    """``--unlabelled-set-b``: set-b's stays join every split's training stays, unlabelled; the
    archive has no Outcomes-b.txt, which the loader would need if set-b's labels were read."""
    from _settings import BENCHMARKS, load_script

    bench = load_script(BENCHMARKS / "physionet.py")
    _write_archive(tmp_path / "pn")
    tiny = ["--task", "classification", "--data", str(tmp_path / "pn"), "--epochs", "1",
            "--solver", "rk4", "--gradient", "backprop", "--latent-dim", "3", "--rec-dim", "6",
            "--units", "8", "--n-layers", "1", "--gru-units", "6", "--batch-size", "12",
            "--verbose", "0", "--val-fraction", "0.2"]
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main([*tiny, "--unlabelled-set-b"])
        plain = bench.main(tiny)
    out = capsys.readouterr().out
    assert "10 unlabelled training stays added" in out
    assert "(+ 10 unlabelled training stays, semi_supervised=True)" in out
    row, base = res["rows"][0], plain["rows"][0]
    assert (row["n_train"], row["n_test"], row["n_unlabelled"]) == (24, 6, 10)
    assert base["n_unlabelled"] == 0
    # same split and baseline; the model saw more stays
    assert row["test_deaths"] == base["test_deaths"]
    assert row["baseline_auc_roc"] == base["baseline_auc_roc"]
    assert row["auc_roc"] != base["auc_roc"] or row["auc_pr"] != base["auc_pr"]
    # set-b is scaled by set-a's statistics ((x - min_a) / max_a, the paper's scaling)
    set_b, _ = bench.load_unlabelled(argparse.Namespace(data=str(tmp_path / "pn")))
    raw_a = load_physionet2012(tmp_path / "pn", sets="a", quantization=bench.QUANTIZATION)
    raw_b = load_physionet2012(tmp_path / "pn", sets="b", quantization=bench.QUANTIZATION)
    assert set_b["id"].min() == 142675 and set_b["id"].nunique() == 10
    np.testing.assert_allclose(set_b["HR"], (raw_b["HR"] - raw_a["HR"].min()) / raw_a["HR"].max())
    with pytest.raises(SystemExit, match="needs the PhysioNet archive"):
        bench.main([*tiny[:2], "--data", str(tmp_path / "absent"), "--allow-sample",
                    "--unlabelled-set-b", *tiny[4:]])
