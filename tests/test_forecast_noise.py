"""``forecast_noise``: the values a training target holds after the conditioning are scored under
an observation model of their own (``LatentODE(forecast_noise=True)``, the estimators'
``forecast_noise``)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from _settings import TINY, ragged_batch
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.nn import LatentODE
from latentode.training import mix_forecast, split_forecast


def _pair(readout="latent"):
    """Two float64 networks with the same weights, without and with ``forecast_noise``."""
    kw = dict(latent_dim=3, rec_dim=4, units=8, n_layers=1, gru_units=4, encoder="gru",
              method="rk4", step_size=0.1, gradient="backprop", readout=readout)
    torch.manual_seed(0)
    shared = LatentODE(2, **kw).double()
    own = LatentODE(2, forecast_noise=True, **kw).double()
    missing, unexpected = own.load_state_dict(shared.state_dict(), strict=False)
    assert not unexpected
    assert sorted(missing) == sorted(
        ["forecast_noise.raw"] + (["forecast_decoder_noise.raw"] if readout != "latent" else []))
    return shared, own


def _loss(model, cond, target, z0_noise, readout_aux=0.0):
    return model.loss(cond, 1, target=target, z0_noise=z0_noise, kl_estimator="analytic",
                      readout_aux=readout_aux)


def _n_after(cond, target):
    """Observed target entries after their series' last conditioning time, counted apart."""
    last = cond.times.gather(1, (cond.lengths - 1)[:, None])
    valid = torch.arange(target.times.shape[1])[None, :] < target.lengths[:, None]
    after = (target.times > last) & valid
    return float((target.mask * after.unsqueeze(-1)).sum())


@pytest.mark.parametrize("task", ["mix", "split"])
def test_the_values_after_the_conditioning_are_scored_under_their_own_scale(task):
    batch = ragged_batch(n=8, length=10, min_length=3)
    if task == "mix":
        cond, target = mix_forecast(batch, 1.0, (0.5, 0.5), torch.Generator().manual_seed(0))
    else:
        cond, target = split_forecast(batch, 0.5)
    shared, own = _pair()
    z0_noise = torch.randn(1, batch.batch_size, 3, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))
    base = _loss(shared, cond, target, z0_noise)
    # the same scale: the same loss to rounding
    assert float(_loss(own, cond, target, z0_noise).loss.detach()) == pytest.approx(
        float(base.loss.detach()), rel=1e-12)
    # a forecast scale k times the reconstruction one: the Gaussian's per-value change is
    # log k + (1 / k^2 - 1) r^2 / (2 sigma^2) on the forecast values alone, so the loss moves
    # by (N_f log k + (1/k^2 - 1) S) / n_obs with N_f counted from the times independently
    sigma = float(shared.obs_std.detach()[0])
    n_obs, n_f = float(base.n_obs), _n_after(cond, target)
    assert 0 < n_f < n_obs if task == "mix" else n_f == n_obs
    diffs = {}
    for k in (2.0, 0.5, 3.0):
        with torch.no_grad():
            own.forecast_noise.raw.fill_(math.log(math.expm1(k * sigma - own.noise.floor)))
        diffs[k] = (float(_loss(own, cond, target, z0_noise).loss.detach())
                    - float(base.loss.detach())) * n_obs
    s = (diffs[2.0] - n_f * math.log(2.0)) / (1 / 4 - 1)  # sum of r^2 / (2 sigma^2)
    assert s > 0
    for k in (0.5, 3.0):
        assert diffs[k] == pytest.approx(n_f * math.log(k) + (1 / k**2 - 1) * s, rel=1e-9)


def test_reconstruction_alone_never_reads_the_forecast_scale():
    batch = ragged_batch(n=8, length=10, seed=2, min_length=3)
    shared, own = _pair(readout="neighbours")
    with torch.no_grad():
        own.forecast_noise.raw.fill_(3.0)
        own.forecast_decoder_noise.raw.fill_(-3.0)
    z0_noise = torch.randn(1, batch.batch_size, 3, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))
    # plain reconstruction (no target) and a mix that picked no series: nothing after the
    # conditioning, so the loss is the shared model's and no gradient reaches the new scales
    unpicked, target = mix_forecast(batch, 1e-12, (0.5, 0.5), torch.Generator().manual_seed(0))
    assert torch.equal(unpicked.lengths, batch.lengths)
    for cond, tgt in ((batch, None), (unpicked, target)):
        own.zero_grad()
        out = _loss(own, cond, tgt, z0_noise, readout_aux=1.0)
        assert float(out.loss.detach()) == pytest.approx(
            float(_loss(shared, cond, tgt, z0_noise, readout_aux=1.0).loss.detach()), rel=1e-12)
        out.loss.backward()
        assert own.forecast_noise.raw.grad is None or not own.forecast_noise.raw.grad.any()
        assert (own.forecast_decoder_noise.raw.grad is None
                or not own.forecast_decoder_noise.raw.grad.any())
    # a forecast: both new scales (the bound's and the auxiliary term's) get gradients
    cond, target = mix_forecast(batch, 1.0, (0.5, 0.5), torch.Generator().manual_seed(0))
    own.zero_grad()
    _loss(own, cond, target, z0_noise, readout_aux=1.0).loss.backward()
    assert own.forecast_noise.raw.grad.abs().min() > 0
    assert own.forecast_decoder_noise.raw.grad.abs().min() > 0


def test_off_by_default_and_the_former_network():
    model = LatentODE(2, latent_dim=3, rec_dim=4, units=8, n_layers=1, gru_units=4)
    assert model.forecast_noise is None and model.hparams["forecast_noise"] is False
    assert not any(k.startswith("forecast_") for k in model.state_dict())
    assert LatentODERegressor().forecast_noise is False
    assert LatentODEClassifier().forecast_noise is False


def test_estimator_learns_a_larger_forecast_scale_and_saves_it(make_oscillators, tmp_path):
    oscillators = make_oscillators(n_series=24)
    params = dict(TINY, max_epochs=20, early_stopping=False, forecast_share=0.5,
                  readout="neighbours")
    est = LatentODERegressor(**params, forecast_noise=True)
    est.fit(oscillators, time_col="t", id_col="id")
    model = est.model_
    assert model.hparams["forecast_noise"] is True
    rec, fc = model.noise().detach(), model.forecast_noise().detach()
    # forecasts err more than reconstruction: their own scale is learned larger (0.254 /
    # 0.252 against 0.239 / 0.239 when written), and the reconstruction scale, the one
    # prediction and intervals read, below the one scale learned for both without the option
    # (0.263 / 0.263)
    shared = LatentODERegressor(**params).fit(oscillators, time_col="t", id_col="id")
    assert bool((fc > rec).all())
    assert bool((rec < shared.model_.noise().detach()).all())
    pred = est.predict(oscillators)
    path = tmp_path / "m.latentode"
    est.save(path)
    loaded = LatentODERegressor.load(path)
    assert loaded.forecast_noise is True
    np.testing.assert_array_equal(loaded.predict(oscillators).to_numpy(), pred.to_numpy())
    torch.testing.assert_close(loaded.model_.forecast_noise(), model.forecast_noise())
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(oscillators).to_numpy(), pred.to_numpy())
    assert clone(est).get_params()["forecast_noise"] is True


def test_a_non_boolean_is_refused_before_training(oscillators):
    with pytest.raises(ValueError, match="forecast_noise"):
        LatentODERegressor(**TINY, forecast_noise="yes").fit(oscillators, time_col="t",
                                                             id_col="id")
