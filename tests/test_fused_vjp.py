"""The adjoint's hand-written VJP for MLP fields equals the autograd VJP.

``LatentDynamics`` declares itself an autonomous MLP (``mlp_layers`` and ``mlp_activation``:
tanh, ELU or softplus), so the adjoint's backward solve skips autograd; a wrapper without those
methods takes the autograd path.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentode.nn import LatentDynamics
from latentode.ode import odeint


class _Plain(nn.Module):
    """The same field, without the declaration (autograd VJPs)."""

    def __init__(self, inner: LatentDynamics) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, t, z):
        return self.inner(t, z)


def _grads(func, z0, t, **kw):
    z0 = z0.clone().requires_grad_()
    out = odeint(func, z0, t, **kw)
    w = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    return torch.autograd.grad((out * w).sum(), [z0, *func.parameters()])


# without a hidden layer there is no activation: that case is run once, as "tanh"
@pytest.mark.parametrize(("n_layers", "activation"),
                         [(0, "tanh"), (2, "tanh"), (2, "elu"), (2, "softplus")])
@pytest.mark.parametrize("stiff", [False, True])
@pytest.mark.parametrize("linear", [False, True], ids=["mlp", "mlp+linear"])
def test_fused_adjoint_vjp_matches_autograd(n_layers: int, activation: str, stiff: bool,
                                            linear: bool) -> None:
    torch.manual_seed(0)
    f = LatentDynamics(3, n_layers=n_layers, units=8, linear=linear,
                       activation=activation).double()
    with torch.no_grad():
        for p in f.parameters():
            # rejected backward steps: 12 to 150 here; ELU and softplus are unbounded, so
            # smaller weights keep their flows from growing by orders of magnitude
            p.normal_(0.0, (2.0 if stiff else 0.5) * (1.0 if activation == "tanh" else 0.4))
        if linear:  # a moderate linear term on top (the MLP makes it stiff or not)
            f.linear.weight.normal_(0.0, 0.5)
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    t = torch.sort(torch.rand(6, 7, generator=g, dtype=torch.float64) * 2.0, 1).values
    t[1] = t[1].flip(0)  # one series runs backwards in time
    lengths = torch.tensor([7, 7, 3, 1, 5, 7])
    kw = dict(lengths=lengths, gradient="adjoint", rtol=1e-6, atol=1e-8)
    fused = _grads(f, z0, t, **kw)
    plain = _grads(_Plain(f), z0, t, **kw)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    # and both are the gradient: against backprop at a tight tolerance
    ref = _grads(f, z0, t, lengths=lengths, gradient="backprop", rtol=1e-10, atol=1e-12)
    num = sum(float((a - b).pow(2).sum()) for a, b in zip(fused, ref))
    den = sum(float(b.pow(2).sum()) for b in ref)
    assert (num / den) ** 0.5 < 1e-4


def test_linear_term_starts_at_zero_and_adds_a_z() -> None:
    torch.manual_seed(0)
    f = LatentDynamics(3, n_layers=1, units=8, linear=True).double()
    z = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(f(None, z), f.net(z))  # A = 0 at initialisation
    with torch.no_grad():
        f.linear.weight.copy_(torch.tensor([[0.0, -2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.5]]))
    expected = f.net(z) + torch.stack([-2 * z[:, 1], 2 * z[:, 0], 0.5 * z[:, 2]], dim=1)
    torch.testing.assert_close(f(None, z), expected)
    assert f.linear_term() is f.linear.weight
    assert LatentDynamics(3).linear_term() is None
