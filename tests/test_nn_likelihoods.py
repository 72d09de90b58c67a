"""Likelihood and KL helpers of latentode.nn against closed forms and torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from latentode.nn import (
    gaussian_log_likelihood,
    kl_normal_standard,
    log_softplus,
    logmeanexp,
    normal_log_prob,
    observation_weights,
    poisson_log_likelihood,
)


def test_gaussian_log_likelihood_matches_torch_on_observed_entries():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    mask = (torch.rand(3, 5, 2, generator=g) < 0.6).double()
    mean = torch.randn(4, 3, 5, 2, generator=g, dtype=torch.float64)
    std = torch.tensor([0.3, 1.7], dtype=torch.float64)
    got = gaussian_log_likelihood(values, mask, mean, std)
    ref = (Normal(mean, std).log_prob(values) * mask).sum((-2, -1))
    assert got.shape == (4, 3)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    # unobserved entries do not matter, whatever their value
    values2 = torch.where(mask > 0, values, torch.full_like(values, 1e6))
    torch.testing.assert_close(gaussian_log_likelihood(values2, mask, mean, std), got)


def test_kl_and_normal_log_prob_match_torch():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    sigma = torch.rand(5, 3, generator=g, dtype=torch.float64) + 0.1
    ref = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_normal_standard(mu, sigma), ref, rtol=1e-12, atol=1e-12)
    z = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    ref_lp = Normal(mu, sigma).log_prob(z).sum(-1)
    torch.testing.assert_close(normal_log_prob(z, mu, sigma), ref_lp, rtol=1e-12, atol=1e-12)


def test_poisson_constant_intensity_matches_analytic():
    # channel c has constant intensity lam_c; events are the observed (t, c) entries
    lam = torch.tensor([0.5, 3.0], dtype=torch.float64)
    times = torch.tensor([[0.1, 0.4, 0.9, 1.6], [0.2, 0.3, 0.3, 0.3]], dtype=torch.float64)
    lengths = torch.tensor([4, 2])
    mask = torch.tensor(
        [[[1, 0], [1, 1], [0, 1], [1, 1]], [[0, 1], [1, 1], [1, 1], [1, 1]]], dtype=torch.float64
    )  # series 1 has padded (masked-out by lengths) entries at positions 2, 3
    mask = mask * (torch.arange(4) < lengths[:, None]).unsqueeze(-1)
    log_lam = torch.log(lam).expand(1, 2, 4, 2)
    cum = lam * (times.unsqueeze(-1) - 0.05)  # any common offset
    got = poisson_log_likelihood(log_lam, cum.unsqueeze(0), mask, lengths)
    n_events = mask.sum(1)  # (B, C)
    span = torch.tensor([1.6 - 0.1, 0.3 - 0.2], dtype=torch.float64)
    expected = (n_events * torch.log(lam)).sum(-1) - span * lam.sum()
    torch.testing.assert_close(got[0], expected, rtol=1e-12, atol=1e-12)
    assert expected[0].item() == pytest.approx(3 * math.log(0.5) + 3 * math.log(3.0) - 1.5 * 3.5)


def test_log_softplus_is_stable_and_has_finite_gradients():
    x = torch.tensor([-500.0, -30.0, -1.0, 0.0, 5.0, 80.0], dtype=torch.float64,
                     requires_grad=True)
    y = log_softplus(x)
    ref = torch.log(torch.nn.functional.softplus(x.detach()[2:]))
    torch.testing.assert_close(y[2:].detach(), ref)
    assert y[0].item() == pytest.approx(-500.0)
    assert y[1].item() == pytest.approx(-30.0, abs=1e-12)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_logmeanexp():
    x = torch.tensor([[0.0, 1000.0], [math.log(3.0), 1000.0]], dtype=torch.float64)
    got = logmeanexp(x, dim=0)
    torch.testing.assert_close(got, torch.tensor([math.log(2.0), 1000.0], dtype=torch.float64))


def test_channel_weighting_gives_each_observed_channel_of_a_series_the_same_total():
    g = torch.Generator().manual_seed(3)
    mask = (torch.rand(6, 9, 4, generator=g) < 0.4).double()
    mask[0] = 0.0
    mask[0, 2, 1] = 1.0  # one series with a single observed value
    mask[1, :, 3] = 1.0  # a channel observed at every time point
    assert observation_weights(mask, "value") is mask
    w = observation_weights(mask, "channel")
    assert bool((w[mask == 0] == 0).all()) and bool((w[mask > 0] > 0).all())
    per_channel = w.sum(1)  # (B, C)
    n_obs = mask.sum((1, 2))
    observed = mask.sum(1) > 0
    for b in range(6):
        totals = per_channel[b][observed[b]]
        # every observed channel has the same total, and the series keeps its total weight
        torch.testing.assert_close(totals, torch.full_like(totals, float(totals[0])))
        torch.testing.assert_close(totals.sum(), n_obs[b])
        # within a channel, every observation has the same weight
        for c in range(4):
            col = w[b, :, c][mask[b, :, c] > 0]
            if len(col):
                torch.testing.assert_close(col, torch.full_like(col, float(col[0])))
    with pytest.raises(ValueError, match="weighting"):
        observation_weights(mask, "series")
