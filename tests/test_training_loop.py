"""fit_model: best-weight restore, early stopping, interrupts, non-finite losses, history."""

import json
import math

import numpy as np
import pytest
import torch
from _settings import batch_loader as _loader
from _settings import tiny_latent_ode as _model
from torch import nn

from latentode.data.batch import Batch
from latentode.nn import LatentODE, LossOutput
from latentode.training import (
    EarlyStopping,
    History,
    TrainingFailedError,
    drop_observations,
    evaluate_loss,
    exponential_kl_schedule,
    fit_model,
    kl_weight_schedule,
    split_forecast,
)


def _data(n=8, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(n, length, generator=g), 1).values
    x = torch.sin(3 * t + torch.rand(n, 1, generator=g) * 6).unsqueeze(-1)
    return Batch(t, x, torch.ones(n, length, 1), torch.full((n,), length))




def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


class _Snapshots:
    """Record the weights after every epoch; from epoch ``ruin_from`` wreck them afterwards."""

    def __init__(self, ruin_from=1, interrupt_at=None):
        self.states, self.ruin_from, self.interrupt_at = [], ruin_from, interrupt_at

    def on_epoch_end(self, epoch, record, model):
        self.states.append(_params(model))
        if self.interrupt_at is not None and epoch == self.interrupt_at:
            raise KeyboardInterrupt
        if epoch >= self.ruin_from:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 3.0)
        return False


def test_restores_best_weights_and_stops_early():
    model, data = _model(), _data()
    snaps = _Snapshots(ruin_from=1)
    hist = fit_model(model, _loader(data), _loader(_data(seed=1)), max_epochs=10, lr=1e-3,
                     kl_warmup=0, n_traj_samples=2, patience=3, callbacks=[snaps], verbose=0)
    assert hist.stopped_reason == "early_stopping"
    val = hist["val_loss"]
    assert hist.best_epoch == min(range(len(val)), key=val.__getitem__)
    assert hist.best_val_loss == pytest.approx(min(val))
    assert len(hist) == hist.best_epoch + 3 + 1  # patience epochs without improvement
    assert _same(_params(model), snaps.states[hist.best_epoch])
    assert not _same(_params(model), snaps.states[-1])


def test_keyboard_interrupt_keeps_best_and_returns():
    model, data = _model(), _data()
    snaps = _Snapshots(ruin_from=0, interrupt_at=2)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        hist = fit_model(model, _loader(data), _loader(_data(seed=1)), max_epochs=10, lr=1e-3,
                         kl_warmup=0, n_traj_samples=1, patience=100, callbacks=[snaps],
                         verbose=0)
    assert hist.stopped_reason == "interrupted"
    assert len(hist) == 3
    val = hist["val_loss"]
    assert hist.best_epoch == min(range(3), key=val.__getitem__)
    assert _same(_params(model), snaps.states[hist.best_epoch])


def test_training_reduces_loss_and_history_round_trips_json():
    model, data = _model(), _data(n=16)
    hist = fit_model(model, _loader(data), None, max_epochs=6, lr=3e-2, kl_warmup=2,
                     n_traj_samples=2, early_stopping=False, verbose=0)
    assert hist.stopped_reason == "max_epochs" and len(hist) == 6
    assert hist.monitor == "train_loss" and hist.best_val_loss is None
    assert hist["kl_weight"] == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist.best_epoch >= 2  # warm-up epochs do not compete on the training loss
    rec = hist.records[0]
    assert {"epoch", "train_loss", "val_loss", "kl_weight", "seconds", "lr"} <= set(rec)
    text = hist.to_json()
    back = History.from_json(text)
    assert back.to_dict() == hist.to_dict() == json.loads(text)
    assert back.best_epoch == hist.best_epoch and back.stopped_reason == "max_epochs"
    # non-finite values become null (strict JSON)
    hist.records[0]["train_loss"] = math.nan
    assert json.loads(hist.to_json())["records"][0]["train_loss"] is None


def test_callback_can_stop_and_lr_decays():
    model, data = _model(), _data()
    hist = fit_model(model, _loader(data), None, max_epochs=10, lr=1e-2, kl_warmup=0,
                     n_traj_samples=1, verbose=0, lr_decay=0.5,
                     callbacks=[lambda epoch, record, model: epoch == 2])
    assert hist.stopped_reason == "callback" and len(hist) == 3
    assert hist["lr"] == pytest.approx([1e-2, 5e-3, 2.5e-3])


class _NaNModel(nn.Module):
    """A stand-in model whose loss is NaN on the batches listed in ``bad``."""

    def __init__(self, bad):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.bad, self.calls = set(bad), 0

    def loss(self, batch, n_traj_samples=1, kl_weight=1.0, **kw):
        i, self.calls = self.calls, self.calls + 1
        value = self.w.square() * batch.values.abs().mean()
        if i in self.bad:
            value = value * math.nan
        z = value.detach()
        return LossOutput(value, z, z * 0, z, batch.mask.sum())


def test_non_finite_batches_are_skipped_and_an_all_nan_epoch_raises():
    data = _data()
    model = _NaNModel(bad={1})
    with pytest.warns(RuntimeWarning, match="skipped 1/2"):
        hist = fit_model(model, _loader(data), None, max_epochs=1, lr=1e-2, kl_warmup=0,
                         n_traj_samples=1, verbose=0)
    assert hist.records[0]["n_skipped"] == 1 and math.isfinite(hist.records[0]["train_loss"])
    assert torch.isfinite(model.w)
    model = _NaNModel(bad={2, 3})
    with pytest.raises(TrainingFailedError, match="non-finite") as info:
        fit_model(model, _loader(data), None, max_epochs=3, lr=1e-2, kl_warmup=0,
                  n_traj_samples=1, verbose=0)
    assert info.value.epoch == 1 and isinstance(info.value, RuntimeError)
    assert torch.isfinite(model.w)


def test_evaluate_loss_is_weighted_and_restores_mode():
    model, data = _model(), _data()
    model.train()
    gen = torch.Generator().manual_seed(0)
    res = evaluate_loss(model, _loader(data, size=3)(), 1, generator=gen)
    assert model.training
    assert res["n_obs"] == data.mask.sum().item()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        parts = [model.loss(b, 1, generator=gen) for b in _loader(data, size=3)()]
    total = sum(p.loss.item() * p.n_obs.item() for p in parts) / data.mask.sum().item()
    assert res["loss"] == pytest.approx(total, rel=1e-5)
    assert res["loss"] != pytest.approx(sum(p.loss.item() for p in parts) / len(parts), rel=1e-3)


def test_kl_schedules():
    lin = kl_weight_schedule(4)
    assert [lin(e, 0) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert kl_weight_schedule(0)(0, 0) == kl_weight_schedule(None)(0, 0) == 1.0
    exp = exponential_kl_schedule(wait=10, rate=0.99)
    assert exp(0, 5) == 0.0 and exp(0, 110) == pytest.approx(1 - 0.99 ** 100)
    assert kl_weight_schedule("exponential")(0, 11) == pytest.approx(0.01)
    assert kl_weight_schedule(lambda e, s: 0.3)(5, 5) == 0.3
    with pytest.raises(ValueError):
        kl_weight_schedule(-1)


def test_early_stopping_callback():
    cb = EarlyStopping(monitor="val_mse", patience=2)
    cb.on_train_begin(None)
    stops = [cb.on_epoch_end(i, {"val_mse": v}, None) for i, v in enumerate([3, 2, 2.5, 2.1, 1])]
    assert stops == [False, False, False, True, False]


def test_drop_observations_hides_the_stated_fraction():
    g = torch.Generator().manual_seed(0)
    n, length, c = 200, 50, 3
    mask = (torch.rand(n, length, c, generator=g) < 0.6).float()
    mask[:20] = 0.0
    mask[:20, 3, 1] = 1.0  # 20 series with a single observed value
    values = torch.randn(n, length, c, generator=g) * mask
    batch = Batch(torch.sort(torch.rand(n, length, generator=g), 1).values, values, mask,
                  torch.full((n,), length))
    out = drop_observations(batch, 0.3, torch.Generator().manual_seed(1))
    kept = out.mask[20:].sum() / mask[20:].sum()
    assert abs(float(kept) - 0.7) < 0.01
    assert bool((out.mask <= mask).all())  # never reveals unobserved entries
    assert torch.equal(out.values, values * out.mask)
    assert torch.equal(out.mask[:20], mask[:20])  # a series never loses all its values
    assert out.times is batch.times and out.lengths is batch.lengths
    again = drop_observations(batch, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(again.mask, out.mask)
    assert drop_observations(batch, 0.0) is batch
    with pytest.raises(ValueError, match="fraction"):
        drop_observations(batch, 1.0)


def _record_loss_calls(model):
    """Wrap ``model.loss``; return the list of ``(training, cond, target, weighting)`` calls."""
    calls = []
    loss = model.loss

    def spy(cond, *args, target=None, weighting="value", **kwargs):
        calls.append((model.training, cond, target, weighting))
        return loss(cond, *args, target=target, weighting=weighting, **kwargs)

    model.loss = spy
    return calls


def test_obs_dropout_conditions_on_a_subset_and_scores_all():
    model, data = _model(), _data(n=8)
    calls = _record_loss_calls(model)
    hist = fit_model(model, _loader(data), _loader(data), max_epochs=3, lr=3e-2, kl_warmup=0,
                     n_traj_samples=2, early_stopping=False, verbose=0, obs_dropout=0.5,
                     generator=torch.Generator().manual_seed(0))
    seen = [(float(cond.mask.sum()), None if target is None else float(target.mask.sum()))
            for training, cond, target, _ in calls if training]
    assert len(seen) == 6 and all(t == 24.0 and 0 < c < 24.0 for c, t in seen), seen
    assert all(math.isfinite(v) for v in hist["val_loss"])
    with pytest.raises(ValueError, match="obs_dropout"):
        fit_model(_model(), _loader(data), max_epochs=1, verbose=0, obs_dropout=1.0)


def test_obs_weighting_reaches_training_and_validation_losses():
    model, data = _model(), _data(n=8)
    calls = _record_loss_calls(model)
    fit_model(model, _loader(data), _loader(data), max_epochs=2, kl_warmup=0, verbose=0,
              early_stopping=False, obs_weighting="channel")
    seen = [(training, weighting) for training, _, _, weighting in calls]
    assert {w for _, w in seen} == {"channel"} and {t for t, _ in seen} == {True, False}
    with pytest.raises(ValueError, match="obs_weighting"):
        fit_model(_model(), _loader(data), max_epochs=1, verbose=0, obs_weighting="series")


def test_split_forecast_moves_each_series_future_to_the_front():
    g = torch.Generator().manual_seed(5)
    n, length, c = 6, 7, 2
    lengths = torch.tensor([7, 5, 1, 3, 2, 7])
    times = torch.sort(torch.rand(n, length, generator=g, dtype=torch.float64), 1).values
    times[5] = torch.linspace(0.0, 1.0, length, dtype=torch.float64)  # split exactly at 0.5
    valid = torch.arange(length) < lengths[:, None]
    times = torch.where(valid, times, times.gather(1, (lengths - 1)[:, None]))
    mask = (torch.rand(n, length, c, generator=g) < 0.7).double() * valid.unsqueeze(-1)
    values = torch.randn(n, length, c, generator=g, dtype=torch.float64) * mask
    batch = Batch(times, values, mask, lengths)
    cond, target = split_forecast(batch, 0.5)
    assert cond.times is times and cond.values is values and cond.mask is mask
    for b in range(n):
        t = times[b, : lengths[b]]
        split = t[0] + 0.5 * (t[-1] - t[0])
        n_past = max(1, int((t < split).sum()))
        assert int(cond.lengths[b]) == n_past
        n_future = int(lengths[b]) - n_past
        assert int(target.lengths[b]) == max(n_future, 1)
        if n_future:
            assert torch.equal(target.times[b, :n_future], t[n_past:])
            assert torch.equal(target.mask[b, :n_future], mask[b, n_past:lengths[b]])
            assert torch.equal(target.values[b, :n_future], values[b, n_past:lengths[b]])
        assert float(target.mask[b, n_future:].sum()) == 0.0  # padding and empty futures
        # padded target times repeat the last valid one (ascending, zero-length intervals)
        assert bool((target.times[b, 1:] >= target.times[b, :-1]).all())
    assert int(cond.lengths[5]) == 3 and int(target.lengths[2]) == 1  # t = 0.5 is the future
    with pytest.raises(ValueError, match="fraction"):
        split_forecast(batch, 1.0)


def test_forecast_split_trains_on_the_past_and_scores_the_future():
    model, data = _model(), _data(n=8)
    calls = _record_loss_calls(model)
    hist = fit_model(model, _loader(data), _loader(data), max_epochs=2, kl_warmup=0, verbose=0,
                     early_stopping=False, forecast_split=0.5)
    seen = [(training, target is not None and bool(
        (target.times[:, 0] > cond.times.gather(1, cond.lengths[:, None] - 1)[:, 0]).all()))
        for training, cond, target, _ in calls]
    assert len(seen) == 8 and all(ok for _, ok in seen)  # 2 epochs x (2 train + 2 val) batches
    assert all(math.isfinite(v) for v in hist["val_loss"])
    with pytest.raises(ValueError, match="forecast_split"):
        fit_model(_model(), _loader(data), max_epochs=1, verbose=0, forecast_split=0.0)


def test_batch_text_is_redrawn_at_most_every_interval(capsys, monkeypatch):
    """With the default interval a fast epoch redraws its "(batch k)" text once, not per batch
    (a redraw per batch floods logs that are not terminals)."""
    import latentode.training.loop as loop

    data = _data()
    calls: list[str] = []
    real = loop.tqdm.set_description

    def spy(self, desc=None, refresh=True):
        calls.append(desc)
        return real(self, desc, refresh)

    monkeypatch.setattr(loop.tqdm, "set_description", spy)
    monkeypatch.setattr(loop, "_BATCH_TEXT_INTERVAL", 3600.0)
    fit_model(_model(), _loader(data, size=2), None, max_epochs=2, lr=1e-2, kl_warmup=0,
              n_traj_samples=1, verbose=1)
    assert calls == ["latentode fit (batch 1)"] * 2  # the first batch of each epoch only
    calls.clear()
    monkeypatch.setattr(loop, "_BATCH_TEXT_INTERVAL", 0.0)  # control: every batch
    fit_model(_model(), _loader(data, size=2), None, max_epochs=1, lr=1e-2, kl_warmup=0,
              n_traj_samples=1, verbose=1)
    assert len(calls) > 1 and calls[1] == "latentode fit (batch 2)"


# ------------------------------------------------------------------------------ classifier scores
def test_binary_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    from latentode.training import binary_roc_auc

    rng = np.random.default_rng(0)
    for n in (2, 7, 50, 301):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=n) + labels, 1)  # rounded: many ties
        got = float(binary_roc_auc(torch.as_tensor(scores), torch.as_tensor(labels)))
        assert got == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert float(binary_roc_auc(torch.tensor([0.2, 0.2, 0.2]), torch.tensor([0, 1, 1]))) == 0.5
    assert np.isnan(float(binary_roc_auc(torch.tensor([0.1, 0.7]), torch.tensor([1, 1]))))


def test_evaluate_classifier_matches_scikit_learn_and_fit_model_monitors_it():
    from sklearn.metrics import log_loss, roc_auc_score

    from latentode.training import evaluate_classifier

    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=3, rec_dim=6, units=8, n_layers=1, gru_units=8,
                      encoder="gru", gradient="backprop", n_classes=2)
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(3):
        t = torch.sort(torch.as_tensor(rng.uniform(0, 1, (8, 6)), dtype=torch.float32), 1).values
        x = torch.as_tensor(rng.normal(size=(8, 6, 2)), dtype=torch.float32)
        batches.append(Batch(t, x, torch.ones(8, 6, 2), torch.full((8,), 6),
                             labels=torch.as_tensor(np.r_[0, 1, rng.integers(0, 2, 6)]),
                             weights=torch.as_tensor(rng.uniform(0.5, 2.0, 8),
                                                     dtype=torch.float32)))
    scores = evaluate_classifier(model, batches)
    model.eval()
    with torch.no_grad():
        proba = torch.cat([torch.softmax(model.classify(b), -1) for b in batches]).double()
    proba = proba / proba.sum(-1, keepdim=True)  # float32 softmax: sums to 1 within 1e-7
    labels = torch.cat([b.labels for b in batches]).numpy()
    weights = torch.cat([b.weights for b in batches]).double().numpy()
    assert scores["n_series"] == 24.0
    assert scores["log_loss"] == pytest.approx(
        log_loss(labels, proba.numpy(), sample_weight=weights), abs=1e-6)
    assert scores["roc_auc"] == pytest.approx(roc_auc_score(labels, proba[:, 1]), abs=1e-12)

    hist = fit_model(model, lambda: iter(batches[:2]), lambda: iter(batches[2:]), max_epochs=3,
                     verbose=0, val_metric="roc_auc", early_stopping=False,
                     loss_options={"ce_weight": 10.0})
    assert hist.monitor == "val_roc_auc"
    assert hist.best_epoch == int(np.argmax(hist["val_roc_auc"]))
    with pytest.raises(ValueError, match="val_metric must be one of"):
        fit_model(model, lambda: iter(batches), max_epochs=1, val_metric="auc")
    with pytest.raises(ValueError, match="needs a val_loader and a model with a classifier"):
        fit_model(model, lambda: iter(batches), max_epochs=1, val_metric="log_loss")
