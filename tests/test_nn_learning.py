"""The Latent ODE learns a known system: sinusoids with random phases, irregularly sampled."""

import math

import pytest
import torch

from latentode.data.batch import Batch
from latentode.nn import LatentODE
from latentode.training import fit_model

NOISE = 0.05
SCALE = 0.7  # ~ standard deviation of a sinusoid: values are roughly standardised


def _sinusoids(n, length, seed, periods=0.5):
    """``sin(2 pi periods t + phase) + noise`` at sorted uniform times in ``[0, 1]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(n, length, generator=g), 1).values
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    clean = torch.sin(2 * math.pi * periods * t + phase) / SCALE
    x = clean + NOISE / SCALE * torch.randn(n, length, generator=g)
    return Batch(t, x.unsqueeze(-1), torch.ones(n, length, 1), torch.full((n,), length)), clean


def _loader(batch, size, seed=None):
    def make():
        order = (torch.randperm(batch.batch_size, generator=torch.Generator().manual_seed(seed))
                 if seed is not None else torch.arange(batch.batch_size))
        for i in range(0, batch.batch_size, size):
            idx = order[i:i + size]
            yield Batch(batch.times[idx], batch.values[idx], batch.mask[idx],
                        batch.lengths[idx])
    return make


def _fit(n_train, length, epochs, seed=0, n_layers=0):
    torch.manual_seed(seed)
    model = LatentODE(1, latent_dim=4, rec_dim=16, units=32, n_layers=n_layers, gru_units=16,
                      gradient="backprop")
    train, _ = _sinusoids(n_train, length, seed=1)
    val, val_clean = _sinusoids(32, length, seed=2)
    hist = fit_model(model, _loader(train, 16, seed=3), _loader(val, 32), max_epochs=epochs,
                     lr=2e-2, kl_warmup=2, n_traj_samples=1, early_stopping=False, verbose=0,
                     generator=torch.Generator().manual_seed(4))
    return model, hist, val, val_clean


def test_loss_decreases_quickly():
    # 4 optimiser steps per epoch, 12 epochs (measured: 9.0 -> 3.7)
    _, hist, _, _ = _fit(n_train=64, length=10, epochs=12)
    val = hist["val_loss"]
    assert val[-1] < val[0] / 2.0, val
    assert hist["val_mse"][-1] < 0.8 * hist["val_mse"][0]


@pytest.mark.slow
def test_learns_sinusoids_to_small_error():
    # 16 optimiser steps per epoch, 20 epochs
    model, hist, val, clean = _fit(n_train=256, length=20, epochs=20)
    with torch.no_grad():
        pred = model.predict(val, val.times, val.lengths).mean[0, ..., 0]
    mse_clean = (pred - clean).square().mean().item()
    # standardised units: the signal has variance ~1, the observation noise 0.005
    assert mse_clean < 0.15, mse_clean  # measured 0.101 (signal variance ~1)
    assert model.obs_std.item() < 0.4
