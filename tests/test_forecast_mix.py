"""The mixed reconstruction / forecasting task: ``mix_forecast``, ``fit_model(forecast_share=...)``
and ``LatentODERegressor(forecast_share=..., forecast_range=...)``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _settings import TINY, fit_loss_calls
from _settings import batch_loader as _loader
from _settings import ragged_batch as _ragged
from _settings import tiny_latent_ode as _tiny_model
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.data.batch import Batch
from latentode.training import FORECAST_RANGE, fit_model, mix_forecast, split_forecast
from latentode.training.loop import _condition_and_target


def test_a_picked_series_conditions_on_nothing_after_its_split():
    batch = _ragged(n=200, length=12, seed=1)
    low, high = 0.3, 0.6
    cond, target = mix_forecast(batch, 1.0, (low, high), torch.Generator().manual_seed(0))
    assert target is batch  # every value of every series is scored
    assert cond.times is batch.times and cond.values is batch.values
    t, n = batch.times, batch.lengths
    first, last = t[:, 0], t.gather(1, (n - 1)[:, None])[:, 0]
    kept_last = t.gather(1, (cond.lengths - 1)[:, None])[:, 0]
    span = (last - first).clamp(min=1e-300)
    multi = n > 1
    # the last conditioning time lies before the latest possible split, the first time not
    # conditioned on at or after the earliest one: nothing after the series' split is seen
    assert bool(((kept_last - first) / span < high)[multi].all())
    after = cond.lengths < n
    nxt = t.gather(1, cond.lengths.clamp(max=t.shape[1] - 1)[:, None])[:, 0]
    assert bool(((nxt - first) / span >= low)[after & multi].all())
    assert bool((cond.lengths >= 1).all()) and bool((cond.lengths <= n).all())
    # a fixed fraction gives split_forecast's past exactly
    fixed, _ = mix_forecast(batch, 1.0, (0.5, 0.5), torch.Generator().manual_seed(3))
    assert torch.equal(fixed.lengths, split_forecast(batch, 0.5)[0].lengths)


def test_share_and_split_points_follow_their_distributions():
    n, length = 4000, 101
    times = torch.linspace(0.0, 1.0, length, dtype=torch.float64).repeat(n, 1)
    ones = torch.ones(n, length, 1, dtype=torch.float64)
    batch = Batch(times, ones, ones, torch.full((n,), length))
    cond, _ = mix_forecast(batch, 0.3, (0.2, 0.8), torch.Generator().manual_seed(0))
    picked = cond.lengths < length
    assert abs(float(picked.double().mean()) - 0.3) < 0.03  # 4000 draws: sd 0.007
    frac = (cond.lengths[picked].double() - 1) / (length - 1)  # last seen time = the fraction
    assert 0.19 <= float(frac.min()) and float(frac.max()) <= 0.8
    assert abs(float(frac.mean()) - 0.5) < 0.02  # uniform over [0.2, 0.8]
    assert abs(float((frac < 0.5).double().mean()) - 0.5) < 0.06


def test_share_zero_draws_nothing_and_the_draws_are_reproducible():
    batch = _ragged()
    g = torch.Generator().manual_seed(7)
    before = g.get_state()
    assert mix_forecast(batch, 0.0, (0.2, 0.8), g) == (batch, None)
    cond, target = _condition_and_target(batch, None, 0.0, g, 0.0, (0.2, 0.8))
    assert cond is batch and target is None and torch.equal(g.get_state(), before)
    a, _ = mix_forecast(batch, 0.5, (0.2, 0.8), torch.Generator().manual_seed(1))
    b, _ = mix_forecast(batch, 0.5, (0.2, 0.8), torch.Generator().manual_seed(1))
    assert torch.equal(a.lengths, b.lengths)
    # obs_dropout then hides values of the past only; the whole series stays the target
    cond, target = _condition_and_target(batch, None, 0.5, torch.Generator().manual_seed(2), 1.0,
                                         (0.5, 0.5))
    assert target is batch and torch.equal(cond.lengths, split_forecast(batch, 0.5)[0].lengths)
    assert float(cond.mask.sum()) < float(batch.mask.sum())
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            mix_forecast(batch, bad)
    for bad in ((0.0, 0.5), (0.6, 0.4), (0.5, 1.0)):
        with pytest.raises(ValueError, match="fractions"):
            mix_forecast(batch, 0.5, bad)




def test_fit_model_trains_and_validates_the_mix():
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 9).repeat(8, 1)
    data = Batch(t, torch.sin(5 * t + torch.rand(8, 1, generator=g) * 6).unsqueeze(-1),
                 torch.ones(8, 9, 1), torch.full((8,), 9))
    model = _tiny_model()
    train, val = fit_loss_calls(
        model, data, max_epochs=2, kl_warmup=0, verbose=0, early_stopping=False,
        forecast_share=1.0, forecast_range=(0.5, 0.5), generator=torch.Generator().manual_seed(0))
    assert len(train) == 4 and len(val) == 4
    # split at 0.5 of [0, 1]: times 0 .. 0.375 seen (4 of 9), all 9 scored
    assert all(n.tolist() == [4] * 4 and tgt is not None and tgt.lengths.tolist() == [9] * 4
               for n, tgt in train)
    # validation scores the same task (share 1: the pasts alone, split at 0.5 as well)
    assert all(n.tolist() == [4] * 4 and tgt is not None and tgt.lengths.tolist() == [9] * 4
               for n, tgt in val)
    with pytest.raises(ValueError, match="forecast_share must lie in"):
        fit_model(_tiny_model(), _loader(data), max_epochs=1, verbose=0, forecast_share=1.5)
    with pytest.raises(ValueError, match="forecast_range must be"):
        fit_model(_tiny_model(), _loader(data), max_epochs=1, verbose=0, forecast_share=0.5,
                  forecast_range=(0.7, 0.3))
    with pytest.raises(ValueError, match="give one"):
        fit_model(_tiny_model(), _loader(data), max_epochs=1, verbose=0, forecast_share=0.5,
                  forecast_split=0.5)


def test_share_zero_reproduces_reconstruction_training_bit_for_bit(oscillators):
    """``forecast_share=0`` (whatever the range) is the training of before the option."""
    tiny = {**TINY, "calibrate": False}  # histories and point predictions: no intervals
    base = LatentODERegressor(**{**tiny, "readout": "neighbours"}).fit(oscillators)
    zero = LatentODERegressor(**{**tiny, "readout": "neighbours", "forecast_share": 0.0,
                                 "forecast_range": (0.4, 0.5)}).fit(oscillators)
    assert base.history_["train_loss"] == zero.history_["train_loss"]
    np.testing.assert_array_equal(base.predict(oscillators).to_numpy(),
                                  zero.predict(oscillators).to_numpy())
    mixed = LatentODERegressor(**{**tiny, "readout": "neighbours", "forecast_share": 0.5}
                               ).fit(oscillators)
    assert mixed.history_["train_loss"] != base.history_["train_loss"]
    again = LatentODERegressor(**{**tiny, "readout": "neighbours", "forecast_share": 0.5}
                               ).fit(oscillators)
    assert mixed.history_["train_loss"] == again.history_["train_loss"]  # random_state=0
    np.testing.assert_array_equal(mixed.predict(oscillators).to_numpy(),
                                  again.predict(oscillators).to_numpy())


def test_estimator_parameters_validate_save_and_clone(oscillators, tmp_path):
    est = LatentODERegressor(**{**TINY, "max_epochs": 1, "forecast_share": 0.25,
                                "forecast_range": [0.3, 0.7]}).fit(oscillators)
    assert clone(est).get_params()["forecast_range"] == [0.3, 0.7]  # stored unchanged
    path = tmp_path / "mix.latentode"
    est.save(path)
    loaded = LatentODERegressor.load(path)
    assert (loaded.forecast_share, loaded.forecast_range) == (0.25, (0.3, 0.7))
    np.testing.assert_array_equal(loaded.predict(oscillators).to_numpy(),
                                  est.predict(oscillators).to_numpy())
    again = pickle.loads(pickle.dumps(est))
    assert again.get_params() == est.get_params()
    state = est.__getstate__()
    del state["forecast_share"], state["forecast_range"]  # pickled before the option
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert (old.forecast_share, old.forecast_range) == (0.0, FORECAST_RANGE)


@pytest.mark.parametrize("classifier", ["latent", "encoder"])
def test_classifier_trains_with_the_mix(make_oscillators, classifier):
    df = make_oscillators(8, 12, seed=3)
    y = (df.groupby("id")["x"].first() > 0).astype(int)
    kw = {**TINY, "max_epochs": 1, "ce_weight": 1.0, "classifier": classifier}
    plain = LatentODEClassifier(**kw).fit(df, y)
    mixed = LatentODEClassifier(**kw, forecast_share=1.0).fit(df, y)
    assert mixed.get_params()["forecast_share"] == 1.0
    p, q = plain.predict_proba(df).to_numpy(), mixed.predict_proba(df).to_numpy()
    assert np.isfinite(q).all() and not np.array_equal(p, q)  # the option reached training


@pytest.mark.parametrize("params, message", [
    (dict(forecast_share=1.5), "forecast_share must lie in [0, 1], got 1.5."),
    (dict(forecast_share="0.5"), "forecast_share must lie in [0, 1], got '0.5'."),
    (dict(forecast_range=(0.8, 0.2)), "forecast_range must be a pair (low, high) with low <= "
                                      "high whose values lie in (0, 1), got (0.8, 0.2)."),
    (dict(forecast_range=(0.0, 0.5)), "forecast_range must be a pair (low, high) with low <= "
                                      "high whose values lie in (0, 1), got (0.0, 0.5)."),
    (dict(forecast_range=0.5), "forecast_range must be a pair (low, high) with low <= high "
                               "whose values lie in (0, 1), got 0.5."),
    (dict(forecast_range=(0.2, 0.5, 0.8)), "forecast_range must be a pair (low, high) with "
                                           "low <= high whose values lie in (0, 1), got "
                                           "(0.2, 0.5, 0.8)."),
    (dict(forecast_share=0.5, forecast_split=0.5), "forecast_share=0.5 and forecast_split=0.5 "
                                                   "are two training tasks"),
])
def test_bad_values_are_refused_before_training(oscillators, params, message, monkeypatch):
    import latentode.estimator as estimator_module

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(estimator_module, "fit_model", no_training)
    with pytest.raises(ValueError) as info:
        LatentODERegressor(**{**TINY, **params}).fit(oscillators)
    assert str(info.value).startswith(message)
