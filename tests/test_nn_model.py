"""LatentODE: shapes, dtypes, sampling, one batched solve, Poisson term, exact gradients."""

import math

import pytest
import torch

import latentode.nn.model as model_mod
from latentode.data.batch import Batch
from latentode.nn import LatentODE, LossOutput, PredictOutput

C = 2


def _batch(dtype=torch.float64, seed=0, lengths=(5, 3, 2)):
    g = torch.Generator().manual_seed(seed)
    b, n = len(lengths), max(lengths)
    lengths = torch.tensor(lengths)
    times = torch.sort(torch.rand(b, n, generator=g, dtype=dtype), 1).values
    valid = torch.arange(n) < lengths[:, None]
    last = times.gather(1, (lengths - 1)[:, None])
    times = torch.where(valid, times, last)
    mask = (torch.rand(b, n, C, generator=g) < 0.7).to(dtype)
    mask[:, 0, 0] = 1.0
    mask = mask * valid.unsqueeze(-1)
    values = torch.randn(b, n, C, generator=g, dtype=dtype) * mask
    return Batch(times, values, mask, lengths)


def _model(**kw):
    torch.manual_seed(0)
    args = dict(latent_dim=3, rec_dim=4, units=8, n_layers=1, gru_units=4)
    args.update(kw)
    return LatentODE(C, **args)


@pytest.mark.parametrize("encoder", ["odernn", "gru"])
@pytest.mark.parametrize("poisson", [False, True])
def test_loss_and_predict_shapes_float32(encoder, poisson):
    model = _model(encoder=encoder, poisson_process=poisson)
    batch = _batch(torch.float32)
    out = model.loss(batch, n_traj_samples=3, kl_weight=0.5)
    assert isinstance(out, LossOutput)
    assert out.loss.shape == () and out.loss.dtype == torch.float32 and out.loss.requires_grad
    assert not (out.nll.requires_grad or out.kl.requires_grad or out.mse.requires_grad)
    assert out.n_obs.item() == batch.mask.sum().item()
    # one trajectory sample, KL weight 1: loss == nll + kl (analytic KL)
    out1 = model.loss(batch, n_traj_samples=1, kl_weight=1.0, generator=torch.Generator())
    assert out1.loss.item() == pytest.approx(out1.nll.item() + out1.kl.item(), rel=1e-5)
    q = torch.stack([torch.linspace(0.2, 1.5, 6)] * 3)
    pred = model.predict(batch, q, torch.tensor([6, 4, 1]), n_samples=4)
    assert isinstance(pred, PredictOutput)
    assert pred.mean.shape == (4, 3, 6, C) and pred.obs_std.shape == (C,)
    if poisson:
        assert pred.intensity.shape == (4, 3, 6, C) and (pred.intensity > 0).all()
    else:
        assert pred.intensity is None
    ll = model.log_likelihood(batch, n_traj_samples=4)
    assert ll.shape == (3,) and torch.isfinite(ll).all()


def test_float64_end_to_end():
    model = _model(poisson_process=True).double()
    batch = _batch(torch.float64)
    out = model.loss(batch, 2)
    out.loss.backward()
    assert out.loss.dtype == torch.float64
    assert all(p.grad is None or p.grad.dtype == torch.float64 for p in model.parameters())
    pred = model.predict(batch, batch.times, batch.lengths)
    assert pred.mean.dtype == pred.obs_std.dtype == pred.intensity.dtype == torch.float64


def test_all_trajectory_samples_in_one_solve(monkeypatch):
    model = _model()
    batch = _batch(torch.float32)
    calls = []
    real = model_mod.odeint

    def spy(func, z0, t, **kw):
        calls.append((tuple(z0.shape), tuple(t.shape), kw.get("lengths")))
        return real(func, z0, t, **kw)

    monkeypatch.setattr(model_mod, "odeint", spy)
    model.loss(batch, n_traj_samples=5)
    assert len(calls) == 1
    z0_shape, t_shape, lengths = calls[0]
    assert z0_shape == (5 * 3, 3) and t_shape == (5 * 3, 5 + 1)  # t0 prepended
    assert lengths.tolist() == [6, 4, 3] * 5


def test_predict_reproducible_with_generator_and_mean_is_deterministic():
    model = _model()
    batch = _batch(torch.float32)
    q, ql = batch.times + 0.3, batch.lengths
    a = model.predict(batch, q, ql, n_samples=3, generator=torch.Generator().manual_seed(7))
    b = model.predict(batch, q, ql, n_samples=3, generator=torch.Generator().manual_seed(7))
    c = model.predict(batch, q, ql, n_samples=3, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    assert (a.mean - c.mean).abs().max() > 1e-6
    m1 = model.predict(batch, q, ql, n_samples=1, use_mean=True)
    m2 = model.predict(batch, q, ql, n_samples=1, use_mean=True)
    torch.testing.assert_close(m1.mean, m2.mean, rtol=0, atol=0)


def test_predict_series_independent_of_batch_and_padding():
    model = _model().double()
    batch = _batch(torch.float64)
    # queries partly before the conditioning window (t0 = min of both)
    q = torch.stack([torch.linspace(-0.3, 1.4, 7)] * 3).double()
    ql = torch.tensor([7, 5, 2])
    full = model.predict(batch, q, ql).mean
    for i in range(3):
        n, m = int(batch.lengths[i]), int(ql[i])
        alone = Batch(batch.times[i:i + 1, :n], batch.values[i:i + 1, :n],
                      batch.mask[i:i + 1, :n], batch.lengths[i:i + 1])
        one = model.predict(alone, q[i:i + 1, :m], ql[i:i + 1]).mean
        torch.testing.assert_close(full[:, i, :m], one[:, 0], rtol=0, atol=1e-6)


def test_poisson_constant_intensity_through_the_model():
    lam = torch.tensor([0.7, 2.5], dtype=torch.float64)
    with_pp = _model(poisson_process=True, rtol=1e-8, atol=1e-10).double()
    net = with_pp.intensity.net
    base = torch.tensor([2.0, 0.5], dtype=torch.float64)
    with_pp.set_intensity_base(base)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
                layer.bias.zero_()
        # base * softplus(b) / log 2 = lam
        net[-1].bias.copy_(torch.log(torch.expm1(lam / base * math.log(2.0))))
    without = _model(poisson_process=False, rtol=1e-8, atol=1e-10).double()
    without.load_state_dict(with_pp.state_dict(), strict=False)
    batch = _batch(torch.float64)
    ll_pp = with_pp.log_likelihood(batch, 1, generator=torch.Generator().manual_seed(0))
    ll = without.log_likelihood(batch, 1, generator=torch.Generator().manual_seed(0))
    last = batch.times.gather(1, (batch.lengths - 1)[:, None])[:, 0]
    span = last - batch.times[:, 0]
    n_events = batch.mask.sum(1)  # (B, C)
    expected = (n_events * torch.log(lam)).sum(-1) - span * lam.sum()
    torch.testing.assert_close(ll_pp - ll, expected, rtol=1e-8, atol=1e-8)
    pred = with_pp.predict(batch, batch.times, batch.lengths)
    torch.testing.assert_close(pred.intensity, lam.expand_as(pred.intensity))


def test_loss_with_target_scores_only_the_target():
    model = _model()
    cond, target = _batch(torch.float32, seed=1), _batch(torch.float32, seed=2)
    target.times += 1.0
    out = model.loss(cond, 2, target=target)
    assert out.n_obs.item() == target.mask.sum().item()
    assert torch.isfinite(out.loss)


def _directional_check(model, batch, directions=2):
    def loss():
        return model.loss(batch, 2, 0.7, generator=torch.Generator().manual_seed(1)).loss

    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss(), params)
    g = torch.Generator().manual_seed(5)
    for _ in range(directions):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        eps = 1e-6
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(eps * vi)
            plus = loss()
            for p, vi in zip(params, v):
                p.sub_(2 * eps * vi)
            minus = loss()
            for p, vi in zip(params, v):
                p.add_(eps * vi)
        fd = (plus - minus) / (2 * eps)
        an = sum((gi * vi).sum() for gi, vi in zip(grads, v))
        assert abs(fd.item() - an.item()) <= 1e-6 * max(1.0, abs(an.item())), (fd, an)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
@pytest.mark.parametrize("poisson", [False, True])
def test_gradient_matches_finite_differences(gradient, poisson):
    model = _model(gradient=gradient, poisson_process=poisson, rtol=1e-10, atol=1e-10).double()
    _directional_check(model, _batch(torch.float64))


def test_gradient_matches_finite_differences_gru_fixed_noise():
    model = _model(encoder="gru", obs_std=0.3, method="rk4", step_size=0.05).double()
    _directional_check(model, _batch(torch.float64))


def test_iwae_bound_with_more_samples_is_tighter_on_average():
    model = _model(encoder="gru", method="rk4", step_size=0.1).double()
    batch = _batch(torch.float64)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        elbo = torch.stack([model.log_likelihood(batch, 1, generator=gen) for _ in range(10)])
        iwae = torch.stack([model.log_likelihood(batch, 16, generator=gen) for _ in range(10)])
    assert torch.isfinite(iwae).all()
    assert iwae.mean() > elbo.mean()


def test_bad_arguments():
    with pytest.raises(ValueError, match="encoder"):
        LatentODE(2, encoder="lstm")
    with pytest.raises(ValueError, match="obs_std"):
        LatentODE(2, obs_std="fixed")
    with pytest.raises(ValueError, match="n_traj_samples"):
        _model().loss(_batch(torch.float32), 0)


def test_intensity_base_sets_the_rate_at_zero_output():
    model = _model(poisson_process=True).double()
    with torch.no_grad():
        for p in model.intensity.net.parameters():
            p.zero_()
    model.set_intensity_base(torch.tensor([30.0, 0.2]))
    z = torch.randn(5, model.latent_dim, dtype=torch.float64)
    torch.testing.assert_close(model.intensity(z), torch.tensor([30.0, 0.2]).double().expand(5, 2))
    torch.testing.assert_close(model.intensity.log_rate(z), model.intensity(z).log())
    with pytest.raises(ValueError, match="positive"):
        model.set_intensity_base(torch.tensor([1.0, 0.0]))
    _model().set_intensity_base(torch.tensor([1.0, 1.0]))  # no Poisson process: no-op


def test_channel_weighting_changes_only_the_likelihood_weights():
    model = _model()

    def losses(batch, weighting):
        return model.loss(batch, 2, 0.5, generator=torch.Generator().manual_seed(4),
                          weighting=weighting)

    full = _batch(torch.float32, lengths=(4, 4, 4))
    full.mask.fill_(1.0)  # every channel observed equally often: both weightings agree
    a, b = losses(full, "value"), losses(full, "channel")
    torch.testing.assert_close(a.loss, b.loss)
    sparse = _batch(torch.float32, seed=3)
    sparse.mask[0, 1:, 1] = 0.0  # uneven channel counts: the bound changes, the plain MSE not
    a, b = losses(sparse, "value"), losses(sparse, "channel")
    assert abs((a.loss - b.loss).item()) > 1e-6
    torch.testing.assert_close(a.mse, b.mse)
    assert a.n_obs == b.n_obs
    with pytest.raises(ValueError, match="weighting"):
        losses(sparse, "series")
