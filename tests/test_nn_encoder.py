"""Encoders: output shapes and independence from padding / batch companions."""

import pytest
import torch

from latentode.nn import GRUEncoder, ODERNNEncoder

C, LATENT = 3, 4


def _make(cls):
    torch.manual_seed(0)
    kwargs = dict(rec_dim=8, units=16, gru_units=8)
    if cls is ODERNNEncoder:
        kwargs["n_layers"] = 1
    return cls(C, LATENT, **kwargs).double()


def _two_series(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    n_long, n_short = 7, 4
    t_long = torch.sort(torch.rand(n_long, generator=g, dtype=dtype)).values
    t_short = torch.sort(torch.rand(n_short, generator=g, dtype=dtype)).values * 0.3
    times = torch.stack([t_long, torch.cat([t_short, t_short[-1].repeat(n_long - n_short)])])
    mask = (torch.rand(2, n_long, C, generator=g) < 0.6).to(dtype)
    mask[:, 0, 0] = 1.0
    mask[1, n_short:] = 0.0
    values = torch.randn(2, n_long, C, generator=g, dtype=dtype) * mask
    lengths = torch.tensor([n_long, n_short])
    return times, values, mask, lengths


@pytest.mark.parametrize("cls", [ODERNNEncoder, GRUEncoder])
def test_shapes_and_positive_sigma(cls):
    enc = _make(cls).float()
    times, values, mask, lengths = (x.float() if x.is_floating_point() else x
                                    for x in _two_series())
    mu, sigma = enc(times, values, mask, lengths)
    assert mu.shape == sigma.shape == (2, LATENT)
    assert mu.dtype == torch.float32
    assert (sigma > 0).all()


@pytest.mark.parametrize("cls", [ODERNNEncoder, GRUEncoder])
def test_padding_does_not_influence_a_series(cls):
    enc = _make(cls)
    times, values, mask, lengths = _two_series()
    t0 = torch.tensor([-0.1, -0.25], dtype=torch.float64)
    mu, sigma = enc(times, values, mask, lengths, t0)
    # the short series alone, unpadded
    n = int(lengths[1])
    mu1, sigma1 = enc(times[1:, :n], values[1:, :n], mask[1:, :n], lengths[1:], t0[1:])
    torch.testing.assert_close(mu[1], mu1[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma[1], sigma1[0], rtol=0, atol=1e-6)
    # garbage in the padding (times, values, mask) changes nothing either
    times2, values2, mask2 = times.clone(), values.clone(), mask.clone()
    times2[1, n:], values2[1, n:], mask2[1, n:] = 5.0, 100.0, 1.0
    mu2, sigma2 = enc(times2, values2, mask2, lengths, t0)
    torch.testing.assert_close(mu2, mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma2, sigma, rtol=0, atol=1e-6)


def test_odernn_evolves_back_to_t0_and_skips_unobserved_times():
    enc = _make(ODERNNEncoder)
    times, values, mask, lengths = _two_series()
    mu_a, _ = enc(times, values, mask, lengths)  # t0 = first observation
    mu_b, _ = enc(times, values, mask, lengths, times[:, 0] - 0.5)
    assert (mu_a - mu_b).abs().max() > 1e-4
    # a time point with nothing observed only moves the state by the ODE: inserting one at the
    # same time as an existing observation changes nothing
    t = torch.cat([times[:1, :3], times[:1, 2:3], times[:1, 3:]], dim=1)
    v = torch.cat([values[:1, :3], torch.zeros(1, 1, C, dtype=torch.float64), values[:1, 3:]], 1)
    m = torch.cat([mask[:1, :3], torch.zeros(1, 1, C, dtype=torch.float64), mask[:1, 3:]], 1)
    mu_c, _ = enc(t, v, m, torch.tensor([8]))
    torch.testing.assert_close(mu_c[0], mu_a[0], rtol=0, atol=1e-9)
