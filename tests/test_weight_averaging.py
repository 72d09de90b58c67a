"""Averaging of the weights over training steps: ``WeightAverage``,
``fit_model(weight_averaging=)``, ``LatentODEClassifier(weight_averaging=)`` and
``LatentODERegressor(weight_averaging=)``."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
import torch
from _settings import TINY, as_saved_before
from _settings import batch_loader as _loader
from sklearn.base import clone
from test_classifier import oscillator_classes
from torch import nn

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import Batch
from latentode.nn import LossOutput
from latentode.training import fit_model
from latentode.training.averaging import WeightAverage


def _set(w: torch.Tensor, value: float) -> None:
    with torch.no_grad():
        w.fill_(value)


def test_first_epoch_is_a_plain_mean_then_the_decay_follows_the_epoch_length():
    w = nn.Parameter(torch.zeros(2))
    avg = WeightAverage([w], epochs=0.5)
    for value in (1.0, 2.0, 3.0, 4.0):  # the first epoch: 4 steps
        _set(w, value)
        avg.update()
    assert avg.averaged[0].tolist() == [2.5, 2.5]  # (1 + 2 + 3 + 4) / 4
    avg.end_epoch()
    assert avg.steps_per_epoch == 4 and avg.decay == 0.5  # 1 - 1 / (0.5 * 4)
    _set(w, 10.0)
    avg.update()
    assert avg.averaged[0].tolist() == [6.25, 6.25]  # 0.5 * 2.5 + 0.5 * 10
    avg.end_epoch()  # later epochs change nothing
    assert avg.decay == 0.5


def test_long_horizon_stays_a_plain_mean_until_its_length():
    w = nn.Parameter(torch.zeros(()))
    avg = WeightAverage([w], epochs=2.0)
    for step in range(1, 11):
        _set(w, float(step))
        avg.update()
        if step == 2:  # epochs of 2 steps: decay 1 - 1 / 4
            avg.end_epoch()
        if step == 4:  # the mean of 1..4: steps 3 and 4 have (t - 1) / t <= 0.75
            assert float(avg.averaged[0]) == pytest.approx(2.5)
    expected = 2.5
    for step in range(5, 11):  # then 0.75 per step
        expected = 0.75 * expected + 0.25 * step
    assert avg.decay == 0.75 and float(avg.averaged[0]) == pytest.approx(expected)


def test_swapped_holds_the_average_and_restores_the_weights():
    w = nn.Parameter(torch.tensor([1.0, -1.0]))
    avg = WeightAverage([w], epochs=1.0)
    _set(w, 3.0)
    avg.update()
    _set(w, 5.0)
    avg.update()
    with avg.swapped():
        assert w.tolist() == [4.0, 4.0]
    assert w.tolist() == [5.0, 5.0] and w.requires_grad
    with pytest.raises(RuntimeError, match="boom"), avg.swapped():
        raise RuntimeError("boom")
    assert w.tolist() == [5.0, 5.0]
    with pytest.raises(ValueError, match="epochs must be > 0"):
        WeightAverage([w], epochs=0.0)


class _Quadratic(nn.Module):
    """A stand-in model: loss ``(w - 3)^2``; records ``w`` at every training call."""

    classifier = None

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen: list[float] = []

    def loss(self, batch, n_traj_samples=1, kl_weight=1.0, **kw):
        self.seen.append(float(self.w.detach()))
        value = (self.w - 3.0).square()
        z = value.detach()
        return LossOutput(value, z, z * 0, z, batch.mask.sum())


def _batches(n=12):
    t = torch.linspace(0, 1, 3).expand(n, 3)
    return Batch(t, torch.zeros(n, 3, 1), torch.ones(n, 3, 1), torch.full((n,), 3))


def test_fit_model_evaluates_and_returns_the_averaged_weights():
    model = _Quadratic()
    seen_by_callback: list[float] = []

    def spy(epoch, record, m):
        seen_by_callback.append(float(m.w.detach()))

    hist = fit_model(model, _loader(_batches(), size=4), None, max_epochs=3, lr=0.5,
                     kl_warmup=0, verbose=0, weight_averaging=1.0, early_stopping=False,
                     callbacks=[spy])
    # the optimiser's weights after steps 1..8 are what the next steps saw: 3 steps per epoch
    live = model.seen[1:]
    assert len(model.seen) == 9
    mean3 = sum(live[:3]) / 3  # the first epoch: the plain mean
    assert seen_by_callback[0] == pytest.approx(mean3)
    expected = mean3
    for value in live[3:6]:  # then decay 1 - 1 / 3 per step
        expected = (2 * expected + value) / 3
    assert seen_by_callback[1] == pytest.approx(expected)
    # training went on from the optimiser's weights, not from the average
    assert model.seen[3] != pytest.approx(seen_by_callback[0])
    # the returned weights are the average of the best epoch (training loss monitored)
    assert float(model.w.detach()) == pytest.approx(seen_by_callback[hist.best_epoch])
    with pytest.raises(ValueError, match="weight_averaging must be a finite number >= 0"):
        fit_model(_Quadratic(), _loader(_batches()), None, max_epochs=1, verbose=0,
                  weight_averaging=-1.0)


def test_without_averaging_the_loop_is_unchanged():
    runs = []
    for option in ({}, {"weight_averaging": 0.0}):
        model = _Quadratic()
        fit_model(model, _loader(_batches(), size=4), None, max_epochs=2, lr=0.5, kl_warmup=0,
                  verbose=0, **option)
        runs.append((model.seen, float(model.w.detach())))
    assert runs[0] == runs[1]


@pytest.fixture(scope="module")
def small():
    return oscillator_classes(8)


@pytest.fixture(params=["classifier", "regressor"])
def case(request, small, oscillators):
    """``(cls, fit, output)``: the estimator class, a function fitting one on its data and
    one giving a fitted estimator's numeric output on that data (a DataFrame)."""
    if request.param == "classifier":
        df, y = small
        return (LatentODEClassifier, lambda est: est.fit(df, y),
                lambda est: est.predict_proba(df))
    return (LatentODERegressor, lambda est: est.fit(oscillators),
            lambda est: est.predict(oscillators)[["x", "v"]])


def test_weight_averaging_fits_reproduces_saves_and_loads(case, tmp_path):
    cls, fit, output = case
    params = {**TINY, "max_epochs": 4, "weight_averaging": 1.5, "random_state": 3}
    est = fit(cls(**params))
    plain = fit(cls(**{**params, "weight_averaging": 0.0}))
    first = output(est)
    # same seed, same optimiser steps: only the averaging differs ...
    assert (first - output(plain)).abs().to_numpy().max() > 1e-4
    # ... and the fitted weights are the average: the last epoch's validation loss is the
    # averaged weights' (the loop's own test checks the swap; here the estimator's records)
    assert est.history_.records[-1]["val_loss"] != plain.history_.records[-1]["val_loss"]
    pd.testing.assert_frame_equal(output(fit(cls(**params))), first, check_exact=True)
    assert clone(est).get_params()["weight_averaging"] == 1.5
    est.save(tmp_path / "e.latentode")
    loaded = cls.load(tmp_path / "e.latentode")
    assert loaded.weight_averaging == 1.5
    pd.testing.assert_frame_equal(output(loaded), first, check_exact=True)
    pd.testing.assert_frame_equal(output(pickle.loads(pickle.dumps(est))), first,
                                  check_exact=True)


def test_defaults_and_files_from_before_weight_averaging(case, tmp_path):
    cls, fit, output = case
    est = fit(cls(**TINY))
    # on by default for the classifier, off for the regressor
    assert est.weight_averaging == (2.0 if cls is LatentODEClassifier else 0.0)
    old, unpickled = as_saved_before(est, "weight_averaging", tmp_path)
    assert old.weight_averaging == 0.0 and unpickled.weight_averaging == 0.0
    pd.testing.assert_frame_equal(output(old), output(est), check_exact=True)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), "2"])
def test_bad_weight_averaging_is_refused_before_training(case, value):
    cls, fit, _ = case
    with pytest.raises(ValueError, match="weight_averaging must be a non-negative finite number"):
        fit(cls(**{**TINY, "weight_averaging": value}))


def test_regressor_refuses_weight_averaging_in_distributed_training(oscillators, monkeypatch):
    from latentode.training import distributed

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    with pytest.raises(ValueError, match="weight_averaging=1.0 is not supported in distributed"):
        LatentODERegressor(**{**TINY, "weight_averaging": 1.0}).fit(oscillators)
