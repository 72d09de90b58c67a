"""``forecast_mode="add"`` (issue #15): the forecasting copies appended to each batch instead of
swapped for its series (``mix_forecast(mode=...)``, ``validation_tasks(forecast_mode=...)``,
``fit_model(forecast_mode=...)`` and the estimators' ``forecast_mode``)."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch
from _settings import TINY, fit_loss_calls
from _settings import batch_loader as _loader
from _settings import ragged_batch as _ragged
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import UNLABELLED, Batch
from latentode.nn import LatentODE
from latentode.training import evaluate_loss, fit_model, mix_forecast, validation_tasks
from latentode.training.objective import _n_past


def _waves(n=8, length=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length).repeat(n, 1)
    return Batch(t, torch.sin(5 * t + torch.rand(n, 1, generator=g) * 6).unsqueeze(-1),
                 torch.ones(n, length, 1), torch.full((n,), length))


def _model(**kwargs):
    """A seeded one-channel model with a fixed-step solver (a batch's rows solve alone)."""
    torch.manual_seed(0)
    return LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1, gru_units=4,
                     encoder="gru", method="rk4", step_size=0.25, gradient="backprop", **kwargs)


def test_add_appends_past_only_copies_of_the_picked_series_scored_on_their_futures():
    base = _ragged(n=30, length=10, seed=4, min_length=2)
    labels = torch.arange(30) % 3
    static = torch.randn(30, 2, dtype=torch.float64)
    batch = Batch(base.times, base.values, base.mask, base.lengths, static=static, labels=labels)
    swap, whole = mix_forecast(batch, 0.4, (0.3, 0.6), torch.Generator().manual_seed(5))
    cond, target = mix_forecast(batch, 0.4, (0.3, 0.6), torch.Generator().manual_seed(5),
                                mode="add")
    # the same draws: the picked series and their splits are those of "swap"
    picked = (swap.lengths < batch.lengths).nonzero().squeeze(1)
    n, p = batch.batch_size, len(picked)
    assert 6 <= p <= 18 and cond.batch_size == target.batch_size == n + p
    # every series first, whole and reconstructed, as in plain training
    for name in ("times", "values", "mask", "lengths", "static", "labels"):
        assert torch.equal(getattr(cond, name)[:n], getattr(batch, name))
        assert torch.equal(getattr(target, name)[:n], getattr(batch, name))
    # then a copy of each picked series: its past conditions, its values after the split
    # are scored (re-padded from position 0), nothing before it
    assert torch.equal(cond.lengths[n:], swap.lengths[picked])
    assert torch.equal(cond.times[n:], batch.times[picked])
    assert torch.equal(cond.static[n:], static[picked])
    assert bool((cond.labels[n:] == UNLABELLED).all()) and target.labels[n:].tolist() == [
        UNLABELLED] * p
    for k, b in enumerate(picked.tolist()):
        cut, end = int(swap.lengths[b]), int(batch.lengths[b])
        m = end - cut
        assert int(target.lengths[n + k]) == max(m, 1)
        assert torch.equal(target.times[n + k, :m], batch.times[b, cut:end])
        assert torch.equal(target.mask[n + k, :m], batch.mask[b, cut:end])
        assert torch.equal(target.values[n + k, :m], batch.values[b, cut:end])
        assert float(target.mask[n + k, m:].sum()) == 0.0
    # the values scored: all of the batch's once, and the picked series' futures once more
    futures = sum(float(batch.mask[b, int(swap.lengths[b]):int(batch.lengths[b])].sum())
                  for b in picked.tolist())
    assert float(target.mask.sum()) == float(batch.mask.sum()) + futures
    with pytest.raises(ValueError, match="mode must be one of"):
        mix_forecast(batch, 0.4, mode="both")


@pytest.mark.parametrize("readout", [dict(), dict(readout="neighbours", readout_sides="split",
                                                  forecast_noise=True)])
def test_the_added_task_is_the_reconstruction_of_every_series_plus_the_copies_forecasts(readout):
    """One batched loss equals, per value, the reconstruction term of every series (as plain
    training computes it) plus the forecast term of the copies (their pasts conditioning,
    their futures scored), computed apart with the same noise."""
    model, batch = _model(**readout), _waves(n=6, seed=2)
    cond, target = mix_forecast(batch, 0.5, (0.3, 0.7), torch.Generator().manual_seed(1),
                                mode="add")
    n = batch.batch_size
    assert cond.batch_size == 9  # three copies at this seed
    noise = torch.randn(3, cond.batch_size, 2, generator=torch.Generator().manual_seed(3))
    out = model.loss(cond, 3, 0.7, target=target, z0_noise=noise)
    rec = model.loss(batch, 3, 0.7, z0_noise=noise[:, :n])
    past = Batch(cond.times[n:], cond.values[n:], cond.mask[n:], cond.lengths[n:])
    future = Batch(target.times[n:], target.values[n:], target.mask[n:], target.lengths[n:])
    fc = model.loss(past, 3, 0.7, target=future, z0_noise=noise[:, n:])
    n_rec, n_fc = float(rec.n_obs), float(fc.n_obs)
    assert n_rec == float(batch.mask.sum()) == 54.0 and n_fc > 0
    assert float(out.n_obs) == n_rec + n_fc
    for name in ("loss", "nll", "kl", "mse"):
        both = float(getattr(out, name).detach()) * (n_rec + n_fc)
        apart = (float(getattr(rec, name).detach()) * n_rec
                 + float(getattr(fc, name).detach()) * n_fc)
        assert both == pytest.approx(apart, rel=1e-5), name
    # the copies weigh: without them the figure per value moves
    assert abs(float(out.loss.detach()) - float(rec.loss.detach())) > 0.01
    # and the gradients are those of the sum
    model.zero_grad()
    out.loss.backward()
    g_both = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    ((model.loss(batch, 3, 0.7, z0_noise=noise[:, :n]).loss * n_rec
      + model.loss(past, 3, 0.7, target=future, z0_noise=noise[:, n:]).loss * n_fc)
     / (n_rec + n_fc)).backward()
    g_apart = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(g_both) == len(g_apart)
    for a, b in zip(g_both, g_apart):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_validation_of_add_weighs_reconstruction_and_futures_as_training_does():
    batch = _ragged(n=40, length=12, seed=2)
    (whole, none, w0), (past, future, w1) = validation_tasks(
        batch, forecast_share=0.25, forecast_range=(0.3, 0.6), forecast_mode="add")
    assert whole is batch and none is None and (w0, w1) == (pytest.approx(0.8),
                                                            pytest.approx(0.2))
    # the same fixed split points as "swap"'s validation
    swap_past = validation_tasks(batch, forecast_share=0.25, forecast_range=(0.3, 0.6))[1][0]
    assert torch.equal(past.lengths, swap_past.lengths)
    u = torch.remainder(0.5 + torch.arange(40, dtype=torch.float64) * 0.6180339887498949, 1.0)
    assert torch.equal(past.lengths, _n_past(batch, 0.3 + 0.3 * u))
    assert torch.equal(future.lengths, (batch.lengths - past.lengths).clamp(min=1))
    assert float(future.mask.sum()) + float(
        (batch.mask * (torch.arange(12)[None, :, None] < past.lengths[:, None, None])).sum()
    ) == float(batch.mask.sum())
    # share 1 keeps both terms (the reconstruction is never given up)
    assert [w for _, _, w in validation_tasks(batch, forecast_share=1.0,
                                              forecast_mode="add")] == [0.5, 0.5]
    with pytest.raises(ValueError, match="forecast_mode must be one of"):
        validation_tasks(batch, forecast_share=0.5, forecast_mode="swapped")
    # evaluate_loss: (reconstruction + share * futures) per weighted value, by hand
    model, data = _model(), _waves(n=5)
    res = evaluate_loss(model, [data], 3, generator=torch.Generator().manual_seed(4),
                        forecast_share=0.25, forecast_range=(0.3, 0.7), forecast_mode="add")
    (_, _, _), (vpast, vfuture, _) = validation_tasks(data, forecast_share=0.25,
                                                      forecast_range=(0.3, 0.7),
                                                      forecast_mode="add")
    g = torch.Generator().manual_seed(4)
    model.eval()
    with torch.no_grad():
        rec = model.loss(data, 3, 1.0, generator=g)
        fc = model.loss(vpast, 3, 1.0, target=vfuture, generator=g)
        sq = float(model.point_squared_error(data).sum()) + 0.25 * float(
            model.point_squared_error(vpast, target=vfuture).sum())
    n_rec, n_fc = float(rec.n_obs), float(fc.n_obs)
    assert n_rec == 45.0 and 0 < n_fc < n_rec
    weighted = n_rec + 0.25 * n_fc
    assert res["n_obs"] == pytest.approx(weighted / 1.25)
    assert res["loss"] == pytest.approx(
        (float(rec.loss) * n_rec + 0.25 * float(fc.loss) * n_fc) / weighted, rel=1e-6)
    assert res["mse"] == pytest.approx(sq / weighted, rel=1e-6)


def test_fit_model_trains_and_validates_the_added_task():
    data = _waves(n=8)
    model = _model()
    train, val = fit_loss_calls(
        model, data, max_epochs=2, kl_warmup=0, verbose=0, early_stopping=False,
        forecast_share=1.0, forecast_range=(0.5, 0.5), forecast_mode="add",
        generator=torch.Generator().manual_seed(0))
    assert len(train) == 4 and len(val) == 8  # two validation terms per batch
    # share 1: each batch of 4 whole series plus their 4 copies (times 0 .. 0.375 seen, the
    # 5 later ones scored)
    assert all(n.tolist() == [9] * 4 + [4] * 4 and tgt.lengths.tolist() == [9] * 4 + [5] * 4
               for n, tgt in train)
    assert [(n.tolist(), None if t is None else t.lengths.tolist()) for n, t in val[:2]] == [
        ([9] * 4, None), ([4] * 4, [5] * 4)]
    with pytest.raises(ValueError, match="forecast_mode must be one of"):
        fit_model(_model(), _loader(data), max_epochs=1, verbose=0, forecast_share=0.5,
                  forecast_mode="append")


def test_added_validation_draws_the_same_noise_at_every_epoch():
    data = _waves(n=8)
    model = _model()
    hist = fit_model(model, _loader(data), _loader(data), max_epochs=3, lr=0.0, kl_warmup=0,
                     verbose=0, early_stopping=False, forecast_share=0.5,
                     forecast_range=(0.3, 0.7), forecast_mode="add",
                     generator=torch.Generator().manual_seed(0))
    assert len(set(hist["val_loss"])) == 1
    ref = evaluate_loss(model, _loader(data)(), 3, generator=torch.Generator().manual_seed(0),
                        forecast_share=0.5, forecast_range=(0.3, 0.7), forecast_mode="add")
    assert hist["val_loss"][0] == pytest.approx(ref["loss"], rel=1e-9)
    swap = evaluate_loss(model, _loader(data)(), 3, generator=torch.Generator().manual_seed(0),
                         forecast_share=0.5, forecast_range=(0.3, 0.7))
    assert abs(swap["loss"] - ref["loss"]) > 0.01  # another task


def test_estimator_add_mode_is_deterministic_and_differs_from_swap(oscillators):
    kw = {**TINY, "readout": "neighbours", "forecast_share": 0.5,
          "calibrate": False}  # histories and point predictions: no interval calibration
    swap = LatentODERegressor(**kw).fit(oscillators)
    named = LatentODERegressor(**kw, forecast_mode="swap").fit(oscillators)
    assert swap.history_["train_loss"] == named.history_["train_loss"]  # the default
    add = LatentODERegressor(**kw, forecast_mode="add").fit(oscillators)
    again = LatentODERegressor(**kw, forecast_mode="add").fit(oscillators)
    assert add.history_["train_loss"] == again.history_["train_loss"]  # random_state=0
    np.testing.assert_array_equal(add.predict(oscillators).to_numpy(),
                                  again.predict(oscillators).to_numpy())
    assert add.history_["train_loss"] != swap.history_["train_loss"]
    # share 0: the mode changes nothing
    plain = LatentODERegressor(**{**kw, "forecast_share": 0.0}).fit(oscillators)
    plain_add = LatentODERegressor(**{**kw, "forecast_share": 0.0},
                                   forecast_mode="add").fit(oscillators)
    assert plain.history_["train_loss"] == plain_add.history_["train_loss"]


def test_estimator_parameter_validates_saves_and_older_files_load_swap(oscillators, tmp_path):
    est = LatentODERegressor(**{**TINY, "max_epochs": 1, "forecast_share": 0.25,
                                "forecast_mode": "add"}).fit(oscillators)
    assert clone(est).get_params()["forecast_mode"] == "add"
    names = list(inspect.signature(LatentODERegressor).parameters)
    assert names[names.index("point_samples") + 1] == "forecast_mode"  # added at the end
    path = tmp_path / "add.latentode"
    est.save(path)
    assert LatentODERegressor.load(path).forecast_mode == "add"
    state = est.__getstate__()
    del state["forecast_mode"]  # pickled before the option
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert old.forecast_mode == "swap"
    assert pickle.loads(pickle.dumps(est)).get_params() == est.get_params()
    with pytest.raises(ValueError, match="forecast_mode must be"):
        LatentODERegressor(**{**TINY, "forecast_mode": "append"}).fit(oscillators)


def test_classifier_adds_unlabelled_copies(make_oscillators):
    df = make_oscillators(8, 12, seed=3)
    y = (df.groupby("id")["x"].first() > 0).astype(int)
    kw = {**TINY, "max_epochs": 1, "ce_weight": 1.0, "forecast_share": 1.0}
    swap = LatentODEClassifier(**kw).fit(df, y)
    add = LatentODEClassifier(**kw, forecast_mode="add").fit(df, y)
    assert add.get_params()["forecast_mode"] == "add"
    names = list(inspect.signature(LatentODEClassifier).parameters)
    assert names[names.index("point_samples") + 1] == "forecast_mode"  # added at the end
    p, q = swap.predict_proba(df).to_numpy(), add.predict_proba(df).to_numpy()
    assert np.isfinite(q).all() and not np.array_equal(p, q)
