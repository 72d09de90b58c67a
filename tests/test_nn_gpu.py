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
