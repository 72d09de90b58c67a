"""An ensemble of classifier heads in one network: ``ClassifierHead(n_members=)``,
``LatentODE(head_members=)`` and ``LatentODEClassifier(head_ensemble=)``."""

from __future__ import annotations

import math
import pickle

import pandas as pd
import pytest
import torch
from _settings import TINY, rewrite_saved_config
from sklearn.base import clone
from test_classifier import oscillator_classes

from latentode import LatentODEClassifier
from latentode.batch import Batch
from latentode.nn import LatentODE
from latentode.nn.classifier import ClassifierHead, weighted_cross_entropy


def test_ensemble_logits_are_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    z, s, u = torch.randn(6, 4, 3), torch.randn(4, 2), torch.randn(4, 5)
    for wide in (False, True):
        head = ClassifierHead(3, 3, n_static=2, units=8, n_layers=1, n_summary=5, wide=wide,
                              n_members=4).eval()
        members = head(z, s, u, members=True)
        assert members.shape == (4, 6, 4, 3)
        # member 0 is net / wide, the others are independent copies
        first = head.net(torch.cat([z, s.expand(6, 4, 2)] + ([] if wide else [u.expand(6, 4, 5)]),
                                   -1))
        if wide:
            first = first + head.wide(u)
        torch.testing.assert_close(members[0], first)
        assert not torch.allclose(members[0], members[1])
        mean_p = torch.softmax(members, -1).mean(0)
        torch.testing.assert_close(torch.softmax(head(z, s, u), -1), mean_p)
        torch.testing.assert_close(head(z, s, u), mean_p.log())
    assert len(head.more_nets) == 3 and len(head.more_wides) == 3
    # one member: the head of before, same logits and state-dict keys
    one = ClassifierHead(3, 2, units=8, n_members=1)
    assert list(one.state_dict()) == [
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]
    z2 = torch.randn(4, 3)
    torch.testing.assert_close(one(z2), one.net(z2), rtol=0, atol=0)
    torch.testing.assert_close(one(z2, members=True), one.net(z2).unsqueeze(0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="n_members must be >= 1, got 0"):
        ClassifierHead(3, 2, n_members=0)


def _batch(n=5):
    torch.manual_seed(1)
    t = torch.linspace(0, 1, 4).expand(n, 4)
    return Batch(t, torch.randn(n, 4, 2), torch.ones(n, 4, 2), torch.full((n,), 4),
                 labels=torch.tensor([0, 1, 1, 0, -1]), weights=torch.tensor([1., 2., 1., 1., 1.]))


@pytest.mark.parametrize("elbo", [True, False])
def test_training_loss_is_the_mean_of_the_members_cross_entropies(elbo):
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=3, rec_dim=4, units=8, n_layers=1, gru_units=4,
                      encoder="gru", method="rk4", step_size=0.25, gradient="backprop",
                      n_classes=2, head_members=3)
    assert model.hparams["head_members"] == 3 and model.classifier.n_members == 3
    batch = _batch()
    noise = model.draw_z0_noise(2, batch.batch_size, generator=torch.Generator().manual_seed(0))
    ce_part = {}
    for weight in (0.0, 1.0) if elbo else (None,):
        kw = {"elbo": False} if weight is None else {"ce_weight": weight, "z0_noise": noise}
        ce_part[weight] = model.loss(batch, 2, **kw).loss
    if elbo:
        mu, std = model.encode(batch, batch.times[:, 0])
        z = mu + std * noise
    else:
        z = model.encode(batch, batch.times[:, 0])[0]
    members = model.classify(batch, z, members=True)
    expected = torch.stack([weighted_cross_entropy(m, batch.labels, batch.weights).sum() / 4
                            for m in members]).mean()  # 4 labelled series
    got = ce_part[1.0] - ce_part[0.0] if elbo else ce_part[None]
    torch.testing.assert_close(got, expected)
    # and not the cross-entropy of the averaged probability
    mixture = weighted_cross_entropy(model.classify(batch, z), batch.labels,
                                     batch.weights).sum() / 4
    assert not math.isclose(float(got.detach()), float(mixture.detach()), rel_tol=1e-4)


@pytest.fixture(scope="module")
def small():
    return oscillator_classes(8)


def test_classifier_head_ensemble_fits_saves_loads_and_refuses_a_changed_warm_start(
        small, tmp_path):
    df, y = small
    clf = LatentODEClassifier(**{**TINY, "head_ensemble": 3, "classifier_dropout": 0.5,
                                 "head_inputs": "latent+wide"}).fit(df, y)
    assert clf.model_.classifier.n_members == 3 and clf.model_.hparams["head_members"] == 3
    proba = clf.predict_proba(df)
    pd.testing.assert_frame_equal(clf.predict_proba(df), proba, check_exact=True)  # eval mode
    assert clone(clf).get_params()["head_ensemble"] == 3
    clf.save(tmp_path / "e.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "e.latentode")
    assert loaded.head_ensemble == 3 and loaded.model_.classifier.n_members == 3
    pd.testing.assert_frame_equal(loaded.predict_proba(df), proba, check_exact=True)
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(clf)).predict_proba(df), proba,
                                  check_exact=True)
    with pytest.raises(ValueError, match=r"needs the head_ensemble of the previous fit \(3\)"):
        clf.set_params(warm_start=True, head_ensemble=2).fit(df, y)
    clf.set_params(head_ensemble=3, max_epochs=1).fit(df, y)
    assert clf.history_.n_epochs == 3


def test_files_and_pickles_from_before_head_ensemble_load_with_one_head(small, tmp_path):
    df, y = small
    clf = LatentODEClassifier(**TINY).fit(df, y)
    clf.save(tmp_path / "new.latentode")

    def edit(config):
        config["params"].pop("head_ensemble")
        config["model_hparams"].pop("head_members")

    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "old.latentode", edit)
    old = LatentODEClassifier.load(tmp_path / "old.latentode")
    assert old.head_ensemble == 1 and old.model_.classifier.n_members == 1
    pd.testing.assert_frame_equal(old.predict_proba(df), clf.predict_proba(df), check_exact=True)
    state = clf.__getstate__()
    del state["head_ensemble"]
    unpickled = LatentODEClassifier.__new__(LatentODEClassifier)
    unpickled.__setstate__(state)
    assert unpickled.head_ensemble == 1


@pytest.mark.parametrize("value", [0, -1, 2.5, "3"])
def test_bad_head_ensemble_is_refused_before_training(small, value):
    df, y = small
    with pytest.raises(ValueError, match="head_ensemble must be an integer >= 1, got"):
        LatentODEClassifier(**{**TINY, "head_ensemble": value}).fit(df, y)
