"""The classifier head's own learning rate (``fit_model(head_lr=)``) and the warm-up of the
cross-entropy (``fit_model(ce_warmup=)``)."""

from __future__ import annotations

import pytest
import torch
from _settings import batch_loader as _loader
from torch import nn

from latentode.batch import Batch
from latentode.nn import LossOutput
from latentode.training import fit_model


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.h = nn.Parameter(torch.zeros(()))


class _TwoPart(nn.Module):
    """A stand-in model: loss ``(w - 3)^2 + ce_weight * (h - 2)^2`` (``linear``: ``-w -
    ce_weight * h``, constant gradients), ``w`` the "encoder" and ``h`` the classifier head;
    as the Latent ODE, ``ce_weight=0`` leaves the head out of the graph. Records the
    ``ce_weight`` of every training call."""

    def __init__(self, linear: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.classifier = _Head()
        self.linear = linear
        self.ce_seen: list[float] = []
        self.val_ce_seen: list[float] = []

    def classify(self, batch, *args, **kw):
        """Two-class logits ``(0, h)`` per series."""
        h = self.classifier.h.expand(batch.batch_size)
        return torch.stack([torch.zeros_like(h), h], -1)

    def loss(self, batch, n_traj_samples=1, kl_weight=1.0, ce_weight=0.0, **kw):
        (self.ce_seen if self.training else self.val_ce_seen).append(float(ce_weight))
        w, h = self.w, self.classifier.h
        value = -w if self.linear else (w - 3.0).square()
        if ce_weight > 0:
            value = value + ce_weight * (-h if self.linear else (h - 2.0).square())
        z = value.detach()
        return LossOutput(value, z, z * 0, z, batch.mask.sum())


def _val(p: torch.Tensor) -> float:
    return float(p.detach())


def _batches(n=8):
    t = torch.linspace(0, 1, 3).expand(n, 3)
    return Batch(t, torch.zeros(n, 3, 1), torch.ones(n, 3, 1), torch.full((n,), 3))


def _fit(model, **kw):
    return fit_model(model, _loader(_batches(), size=8), None, kl_warmup=0, verbose=0,
                     early_stopping=False, loss_options={"ce_weight": 10.0}, **kw)


@pytest.mark.parametrize("optimizer", ["adamax", "adam"])
def test_head_lr_scales_the_heads_step_only(optimizer):
    # the first Adam(ax) step moves each parameter by its group's learning rate
    model = _TwoPart()
    _fit(model, max_epochs=1, lr=0.1, head_lr=0.2, optimizer=optimizer)
    assert _val(model.w) == pytest.approx(0.1, rel=1e-5)
    assert _val(model.classifier.h) == pytest.approx(0.02, rel=1e-5)
    plain = _TwoPart()
    _fit(plain, max_epochs=1, lr=0.1, optimizer=optimizer)  # head_lr=1: the same step
    assert _val(plain.classifier.h) == pytest.approx(0.1, rel=1e-5)


def test_head_lr_decays_to_its_own_floor():
    model = _TwoPart(linear=True)  # constant gradients: every Adamax step is the group's lr
    seen: list[list[float]] = []
    hist = _fit(model, max_epochs=4, lr=0.1, head_lr=0.5, lr_decay=0.1,
                callbacks=[lambda e, r, m: seen.append([_val(m.w), _val(m.classifier.h)])])
    assert [r["lr"] for r in hist.records] == pytest.approx([0.1, 0.01, 0.01, 0.01])
    # steps: w by 0.1, then 0.01 (floor lr / 10); h by 0.05, then 0.005 (its floor, 0.1 * 0.05)
    assert seen[-1][0] == pytest.approx(0.1 + 3 * 0.01, rel=1e-4)
    assert seen[-1][1] == pytest.approx(0.05 + 3 * 0.005, rel=1e-4)


def test_head_weight_decay_is_the_heads_group_only():
    model = _TwoPart(linear=True)
    seen: list[list[float]] = []
    _fit(model, max_epochs=2, lr=0.1, head_weight_decay=1.0,
         callbacks=[lambda e, r, m: seen.append([_val(m.w), _val(m.classifier.h)])])
    assert seen[-1][0] == pytest.approx(0.2, rel=1e-5)  # w: constant gradient, no decay
    # h: gradient -10 + 1.0 * h, -10 then -9.9; Adamax's second step: m = 0.9 * (-1) + 0.1 *
    # (-9.9) = -1.89 (bias-corrected / 0.19), u = max(0.999 * 10, 9.9) = 9.99
    assert seen[-1][1] == pytest.approx(0.1 + 0.1 * (1.89 / 0.19) / 9.99, rel=1e-5)
    plain = _TwoPart(linear=True)
    _fit(plain, max_epochs=2, lr=0.1)
    assert _val(plain.classifier.h) == pytest.approx(0.2, rel=1e-5)


def test_ce_warmup_ramps_the_cross_entropy_from_zero():
    model = _TwoPart()
    heads: list[float] = []
    _fit(model, max_epochs=5, lr=0.1, ce_warmup=4,
         callbacks=[lambda e, r, m: heads.append(_val(m.classifier.h))])
    assert model.ce_seen == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0])
    assert heads[0] == 0.0  # epoch 0: no gradient reaches the head
    assert heads[1] == pytest.approx(0.1, rel=1e-5)  # its first step, in epoch 1
    plain = _TwoPart()
    _fit(plain, max_epochs=2, lr=0.1)
    assert plain.ce_seen == [10.0, 10.0]


def test_ce_warmup_leaves_validation_at_the_full_weight():
    model = _TwoPart()
    b = _batches()
    labelled = Batch(b.times, b.values, b.mask, b.lengths,
                     labels=torch.tensor([0, 1] * 4))
    hist = fit_model(model, _loader(_batches(), size=8), lambda: iter([labelled]),
                     max_epochs=2, lr=0.1, kl_warmup=0, verbose=0, early_stopping=False,
                     loss_options={"ce_weight": 10.0}, ce_warmup=2)
    # epoch 0's validation loss: (0.1 - 3)^2 + 10 * (0 - 2)^2 (w stepped, h did not)
    assert hist.records[0]["val_loss"] == pytest.approx(2.9 ** 2 + 40.0, rel=1e-5)
    assert model.ce_seen == [0.0, 5.0] and model.val_ce_seen == [10.0, 10.0]


@pytest.mark.parametrize("kw, match", [
    ({"head_lr": 0.0}, "head_lr must be a finite number > 0"),
    ({"head_lr": float("nan")}, "head_lr must be a finite number > 0"),
    ({"ce_warmup": -1}, "ce_warmup must be an integer >= 0"),
    ({"ce_warmup": 1.5}, "ce_warmup must be an integer >= 0"),
])
def test_bad_head_options_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        _fit(_TwoPart(), max_epochs=1, **kw)
