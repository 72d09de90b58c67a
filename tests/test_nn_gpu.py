"""CUDA smoke test: the model and the training loop run on the GPU and follow its dtype."""

import pytest
import torch

from latentode.data.batch import Batch
from latentode.nn import LatentODE
from latentode.training import fit_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _batch(n=8, length=6):
    g = torch.Generator().manual_seed(0)
    t = torch.sort(torch.rand(n, length, generator=g), 1).values
    x = torch.randn(n, length, 2, generator=g)
    return Batch(t, x, torch.ones(n, length, 2), torch.full((n,), length))


@pytest.mark.parametrize("gradient", ["adjoint", "backprop"])
def test_cuda_loss_predict_and_fit(gradient):
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=3, rec_dim=8, units=16, n_layers=1, gru_units=8,
                      poisson_process=True, gradient=gradient).cuda()
    batch = _batch().to("cuda")
    out = model.loss(batch, 3)
    out.loss.backward()
    assert out.loss.is_cuda and all(p.grad is not None for p in model.parameters())
    pred = model.predict(batch, batch.times, batch.lengths, n_samples=2,
                         generator=torch.Generator().manual_seed(1))  # CPU generator is fine
    assert pred.mean.is_cuda and pred.mean.shape == (2, 8, 6, 2) and pred.intensity.is_cuda
    cpu = _batch()
    hist = fit_model(model, lambda: [cpu], lambda: [cpu], max_epochs=2, lr=1e-2, kl_warmup=1,
                     n_traj_samples=2, verbose=0, device="cuda")
    assert len(hist) == 2 and next(model.parameters()).is_cuda


@pytest.mark.parametrize("gradient", ["adjoint", "backprop"])
@pytest.mark.parametrize("encoder", ["odernn", "gru"])
def test_cuda_loss_and_gradients_equal_cpu(gradient, encoder):
    """The same weights and batch give the same loss and gradients on both devices (float64:
    the CUDA path replays captured graphs of the encoder scan, the CPU path runs it eagerly)."""
    torch.manual_seed(0)
    cpu = LatentODE(2, latent_dim=3, rec_dim=8, units=16, n_layers=2, gru_units=8,
                    encoder=encoder, gradient=gradient).double()
    gpu = LatentODE(2, latent_dim=3, rec_dim=8, units=16, n_layers=2, gru_units=8,
                    encoder=encoder, gradient=gradient).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    batch = _batch().to("cpu", torch.float64)
    batch.lengths[::3] = 3  # ragged
    results = []
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        for _ in range(2):  # the second CUDA call replays the graphs captured by the first
            model.zero_grad()
            noise = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(5),
                                dtype=torch.float64)
            out = model.loss(batch.to(dev), 2, z0_noise=noise.to(dev))
            out.loss.backward()
        results.append((out.loss.item(), [p.grad.cpu() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-9)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_graphed_scan_equals_eager_scan_float32():
    from latentode.nn.encoder import ODERNNEncoder

    torch.manual_seed(0)
    enc = ODERNNEncoder(2, 3, rec_dim=8, units=16, n_layers=2, gru_units=8).cuda()
    batch = _batch(n=16, length=20).to("cuda")
    grads = []
    for graphs in ("1", "0", "1"):
        import os

        os.environ["LATENTODE_CUDA_GRAPHS"] = graphs
        try:
            enc.zero_grad()
            mu, sigma = enc(batch.times, batch.values, batch.mask, batch.lengths)
            (mu.square().sum() + sigma.sum()).backward()
            grads.append((mu.detach().cpu(), [p.grad.cpu() for p in enc.parameters()]))
        finally:
            os.environ.pop("LATENTODE_CUDA_GRAPHS", None)
    for other in grads[1:]:
        torch.testing.assert_close(other[0], grads[0][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(other[1], grads[0][1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_graphed_scan_states_equal_eager_scan():
    """The scan's per-event states (the classifier's pooled head) and their gradients are the
    same through the captured CUDA graphs as eagerly."""
    import os

    from latentode.nn.encoder import ODERNNEncoder

    torch.manual_seed(0)
    enc = ODERNNEncoder(2, 3, rec_dim=8, units=16, n_layers=2, gru_units=8).cuda()
    batch = _batch(n=16, length=20).to("cuda")
    weights = torch.randn(64, device="cuda")
    results = []
    for graphs in ("1", "0", "1"):
        os.environ["LATENTODE_CUDA_GRAPHS"] = graphs
        try:
            enc.zero_grad()
            mu, sigma, states, observed = enc(batch.times, batch.values, batch.mask,
                                              batch.lengths, return_states=True)
            pooled = (states * observed.unsqueeze(-1)).sum(0)
            loss = mu.square().sum() + (pooled * weights[: pooled.shape[-1]]).sum()
            loss.backward()
            results.append((states.detach().cpu(),
                            [p.grad.cpu() for p in enc.parameters()]))
        finally:
            os.environ.pop("LATENTODE_CUDA_GRAPHS", None)
    for other in results[1:]:
        torch.testing.assert_close(other[0], results[0][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(other[1], results[0][1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
