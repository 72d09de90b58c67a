"""The faster paths of the user's calls give the numbers of the former ones (README "Training
speed", the user path): each test compares a fast path with the former computation."""

from __future__ import annotations

import math
import warnings

import _settings
import numpy as np
import pytest
import torch
from scipy.special import stdtr

from latentode import LatentODERegressor
from latentode.nn.observation import base as obs_base
from latentode.nn.observation.tails import CLOSED_FORM_DF, CLOSED_FORM_FLOOR, t_cdf_torch
from latentode.training import calibrate_spread
from latentode.training.calibration import TAIL_GRID


def _scipy_t_cdf(z: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """The former ``t_cdf_torch``: scipy's ``stdtr`` on the host."""
    cdf = stdtr(df.detach().double().cpu().numpy(), z.detach().double().cpu().numpy())
    return torch.as_tensor(cdf, dtype=z.dtype, device=z.device)


# ------------------------------------------------------------------ Student-t CDF
@pytest.mark.parametrize("df", [*TAIL_GRID[1:], 5.0, 31.0, 64.0, 0.7])
def test_t_cdf_torch_agrees_with_scipy_to_float_rounding(df):
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(20_000, generator=g, dtype=torch.float64) * 4,
                   torch.linspace(-1e3, 1e3, 2001, dtype=torch.float64),
                   torch.tensor([0.0, 1e-300, -1e-300, 1e12, -1e12, math.inf, -math.inf,
                                 math.nan], dtype=torch.float64)])
    fast = t_cdf_torch(z, torch.tensor(df, dtype=torch.float64)).numpy()
    ref = stdtr(df, z.numpy())
    assert np.array_equal(np.isnan(fast), np.isnan(ref))
    ok = ~np.isnan(ref)
    err = np.abs(fast[ok] - ref[ok])
    assert err.max() <= 1e-15
    assert (err / np.maximum(ref[ok], 1e-300)).max() <= 1e-12  # relative, far tails included
    lo, hi = CLOSED_FORM_DF
    closed = lo <= df <= hi and float(df).is_integer()
    if not closed:  # scipy's own values
        assert np.array_equal(fast[ok], ref[ok])
    else:  # the far lower tail is scipy's too
        tail = ok & (ref < CLOSED_FORM_FLOOR / 2)
        assert tail.sum() > 10 and np.array_equal(fast[tail], ref[tail])


def test_t_cdf_torch_per_entry_degrees_of_freedom_broadcast_and_dtype():
    g = torch.Generator().manual_seed(1)
    df = torch.tensor([2.0, 3.0, 30.0, 1.5, math.inf, 6.0]).repeat(50)  # (n,) per entry
    z = torch.randn(8, 300, generator=g, dtype=torch.float64) * 5
    fast, ref = t_cdf_torch(z, df), _scipy_t_cdf(z, df)
    assert fast.shape == ref.shape == (8, 300)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-15)
    z32 = z.float()
    out = t_cdf_torch(z32, df)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _scipy_t_cdf(z32, df), rtol=0, atol=0)
    assert t_cdf_torch(torch.zeros(0, 3), torch.full((3,), 4.0)).shape == (0, 3)


# ------------------------------------------------------------------ calibration
def _fitted_tiny(n_series=40):
    from latentode.datasets import make_periodic

    df = make_periodic(n_series, 30, noise_std=0.01, random_state=0)
    rng = np.random.default_rng(0)  # heavy-tailed errors, so that calibrated tails are chosen
    df["x0"] = df["x0"] + 0.3 * rng.standard_t(1.5, len(df))
    est = LatentODERegressor(**{**_settings.TINY, "max_epochs": 1, "calibrate": False,
                                "validation_fraction": 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(df)
    return est, df


def test_calibration_with_the_closed_form_cdf_is_that_of_scipy(monkeypatch):
    from latentode import data as _data

    est, df = _fitted_tiny()
    vf, padded = est._prepare(df)
    batches = list(_data.iterate_batches(padded, 20))
    results = []
    for cdf in (t_cdf_torch, _scipy_t_cdf):
        monkeypatch.setattr(obs_base, "t_cdf_torch", cdf)
        model = est.model_
        model.gap_spread.reset()
        calibrate_spread(model, batches, n_samples=4, rounds=2, min_tail_values=20,
                         generator=torch.Generator().manual_seed(0))
        results.append([model.spread_scale.clone(), model.gap_spread.edges.clone(),
                        model.gap_spread.factors.clone(), model.gap_spread.tail_df.clone()])
    assert torch.isfinite(results[0][3]).any()  # some tails chosen: the last pass used them
    for new, old in zip(*results):
        assert torch.equal(new, old)


# ------------------------------------------------------------------ dense output
def _former_evaluate_at(steps, step_of, theta):
    batch, n_out = step_of.shape
    idx = step_of.unsqueeze(-1).expand(batch, n_out, steps.shape[-1])
    out = None
    for k in range(steps.shape[1]):
        c_k = steps[:, k].transpose(0, 1).gather(1, idx)
        out = c_k if out is None else out * theta.unsqueeze(-1) + c_k
    return out


@pytest.mark.parametrize("grad", [False, True])
def test_dense_output_in_place_is_the_former_evaluation(grad):
    from latentode.ode.stepper import DenseOutput

    g = torch.Generator().manual_seed(0)
    steps = torch.randn(7, 5, 30, 4, generator=g, dtype=torch.float64, requires_grad=grad)
    step_of = torch.randint(0, 7, (30, 11), generator=g).sort(1).values
    theta = torch.rand(30, 11, generator=g, dtype=torch.float64)
    before = steps.detach().clone()
    got = DenseOutput.evaluate_at(steps, step_of, theta)
    want = _former_evaluate_at(steps, step_of, theta)
    assert torch.equal(got, want) and torch.equal(steps.detach(), before)  # steps untouched
    if grad:
        (g1,) = torch.autograd.grad(got.square().sum(), steps)
        (g2,) = torch.autograd.grad(want.square().sum(), steps)
        assert torch.equal(g1, g2)
    with torch.no_grad():
        assert torch.equal(DenseOutput.evaluate_at(steps, step_of, theta), want)
