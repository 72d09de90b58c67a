"""The fused fixed-step solve (``latentode/ode/fixed.py``) against today's path.

Today's path is :func:`latentode.ode.solve.integrate` through autograd, which ``odeint`` runs when
:func:`latentode.ode.fixed.solve_fixed` answers None; the reference runs patch it so. The fused
path must give the same states to the bit and the same gradients (to 1e-5 relative in float32,
1e-10 in float64), and leave every case it does not cover on today's path.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import latentode.ode.api as api
import latentode.ode.fixed as fixed
from latentode.nn.dynamics import LatentDynamics
from latentode.ode import ODESolveError, odeint
from latentode.ode.fixed import solve_fixed

CONFIGS = list(itertools.product(
    (torch.float32, torch.float64), ("rk4", "euler"), ("tanh", "elu", "softplus"),
    (False, True)))
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture
def backwards(monkeypatch) -> list:
    """The fused backward's calls (one entry each)."""
    calls: list = []
    inner = fixed._backward

    def spy(run, xs, grad_out):
        calls.append(run)
        return inner(run, xs, grad_out)

    monkeypatch.setattr(fixed, "_backward", spy)
    return calls


def _field(dim: int, act: str, linear: bool, dtype: torch.dtype, n_layers: int = 2,
           seed: int = 0) -> LatentDynamics:
    torch.manual_seed(seed)
    f = LatentDynamics(dim, n_layers=n_layers, units=16, linear=linear, activation=act)
    for p in f.parameters():  # weights large enough that every layer matters
        torch.nn.init.normal_(p, std=0.4)
    return f.to(dtype)


def _times(batch: int, n: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(batch, n, generator=g, dtype=dtype) + 0.05).cumsum(1) * 0.3
    t[2] = -t[2]  # a series backwards in time
    t[3, 4] = t[3, 3]  # equal neighbouring times
    return t


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))


def _solve_and_grads(f, z0, t, fused: bool, monkeypatch, **kw):
    monkeypatch.setattr(api, "solve_fixed", solve_fixed if fused else lambda *a, **k: None)
    z = z0.clone().requires_grad_(True)
    f.zero_grad(set_to_none=True)
    out = odeint(f, z, t, gradient="backprop", **kw)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    (out * weight).sum().backward()
    return out.detach(), z.grad, [p.grad for p in f.parameters()]


def _check(f, z0, t, monkeypatch, backwards, **kw):
    ref = _solve_and_grads(f, z0, t, False, monkeypatch, **kw)
    assert not backwards
    new = _solve_and_grads(f, z0, t, True, monkeypatch, **kw)
    assert len(backwards) == 1  # the fused path was taken
    assert torch.equal(new[0], ref[0])  # the states, to the bit
    tol = TOL[z0.dtype]
    assert _rel(new[1], ref[1]) < tol
    for a, b in zip(new[2], ref[2]):
        assert _rel(a, b) < tol
    return ref, new


@pytest.mark.parametrize("dtype,method,act,linear", CONFIGS)
def test_fused_solve_gives_todays_states_and_gradients(dtype, method, act, linear, monkeypatch,
                                                       backwards):
    """Ragged lengths, a series backwards in time, equal neighbouring times, padded outputs."""
    f = _field(5, act, linear, dtype)
    z0 = torch.randn(7, 5, generator=torch.Generator().manual_seed(2), dtype=dtype)
    lengths = torch.tensor([9, 3, 9, 9, 1, 5, 9])
    _check(f, z0, _times(7, 9, dtype), monkeypatch, backwards, method=method,
           lengths=lengths)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("case", ("mask", "step_size", "shared_times", "one_layer_forwards",
                                  "no_hidden_layer"))
def test_fused_solve_other_grids(case, dtype, monkeypatch, backwards):
    """A mask, a step size smaller than the intervals, times shared by all series, all series
    forwards (no products by the direction), a field without a hidden layer."""
    f = _field(4, "tanh", True, dtype, n_layers=0 if case == "no_hidden_layer" else 1)
    z0 = torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=dtype)
    t = _times(6, 8, dtype)
    kw: dict = {"method": "rk4"}
    if case == "mask":
        kw["mask"] = torch.rand(6, 8, generator=torch.Generator().manual_seed(4)) > 0.4
        kw["mask"][:, 0] = True
    elif case == "step_size":
        kw["step_size"] = 0.13
    elif case == "shared_times":
        t = t[0]
    else:
        t = t.abs()
    _check(f, z0, t, monkeypatch, backwards, **kw)


def test_fused_solve_gradcheck(backwards):
    """Finite differences in float64 against the hand-written backward (no padding: padded
    positions are detached by design)."""
    f = _field(3, "softplus", True, torch.float64, n_layers=1)
    t = _times(4, 5, torch.float64)
    lengths = None
    z0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    params = list(f.parameters())

    out = odeint(f, z0, t, method="rk4", gradient="backprop", lengths=lengths)
    assert torch.autograd.gradcheck(lambda z: odeint(f, z, t, method="rk4",
                                                     gradient="backprop", lengths=lengths),
                                    (z0,))
    assert backwards  # gradcheck went through the fused backward
    # the parameters' gradients by central differences
    out.sum().backward()
    eps = 1e-6
    for p in params:
        flat = p.data.view(-1)
        for idx in range(0, flat.numel(), max(1, flat.numel() // 5)):
            old = float(flat[idx])
            flat[idx] = old + eps
            with torch.no_grad():
                up = odeint(f, z0, t, method="rk4", gradient="backprop", lengths=lengths).sum()
            flat[idx] = old - eps
            with torch.no_grad():
                down = odeint(f, z0, t, method="rk4", gradient="backprop",
                              lengths=lengths).sum()
            flat[idx] = old
            fd = float(up - down) / (2 * eps)
            assert abs(fd - float(p.grad.view(-1)[idx])) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("gradient", ("backprop", "adjoint"))
@pytest.mark.parametrize("method", ("rk4", "euler"))
def test_no_grad_solves_are_todays_to_the_bit(gradient, method, monkeypatch):
    f = _field(5, "elu", True, torch.float32)
    z0 = torch.randn(7, 5, generator=torch.Generator().manual_seed(2))
    t = _times(7, 9, torch.float32)
    with torch.no_grad():
        new = odeint(f, z0, t, method=method, gradient=gradient)
        monkeypatch.setattr(api, "solve_fixed", lambda *a, **k: None)
        ref = odeint(f, z0, t, method=method, gradient=gradient)
    assert torch.equal(new, ref)


def test_parameters_without_grad_and_z0_without_grad(monkeypatch, backwards):
    f = _field(4, "tanh", False, torch.float64)
    f.net[0].weight.requires_grad_(False)
    z0 = torch.randn(5, 4, dtype=torch.float64)
    t = _times(5, 6, torch.float64)
    out = odeint(f, z0, t, method="rk4", gradient="backprop")
    out.square().sum().backward()
    assert len(backwards) == 1
    assert f.net[0].weight.grad is None and f.net[0].bias.grad is not None
    grads = [p.grad.clone() for p in f.parameters() if p.requires_grad]
    f.zero_grad(set_to_none=True)
    monkeypatch.setattr(api, "solve_fixed", lambda *a, **k: None)
    odeint(f, z0, t, method="rk4", gradient="backprop").square().sum().backward()
    for a, p in zip(grads, [p for p in f.parameters() if p.requires_grad]):
        assert _rel(a, p.grad) < 1e-10


def test_double_backward_is_todays(monkeypatch):
    """``create_graph=True``: the backward re-runs today's path, whose graph gives the second
    derivative."""
    f = _field(3, "tanh", True, torch.float64, n_layers=1)
    t = _times(4, 5, torch.float64)

    def second(fused: bool) -> torch.Tensor:
        monkeypatch.setattr(api, "solve_fixed", solve_fixed if fused else lambda *a, **k: None)
        z = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        z.requires_grad_(True)
        out = odeint(f, z, t, method="rk4", gradient="backprop")
        (g,) = torch.autograd.grad(out.square().sum(), z, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), z)
        return gg

    assert _rel(second(True), second(False)) < 1e-12


def test_hooks_keep_todays_path():
    """A hook on the field (a global one, as benchmarks/train_speed.py counts evaluations with)
    is called as before: the fused path, which calls no module, is not taken."""
    f = _field(3, "tanh", False, torch.float32, n_layers=1)
    z0 = torch.randn(4, 3, requires_grad=True)
    t = _times(4, 5, torch.float32).abs()
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, out: calls.append(m) if m is f else None)
    try:
        out = odeint(f, z0, t, method="rk4", gradient="backprop")
    finally:
        handle.remove()
    assert type(out.grad_fn).__name__ != "_FusedFixedBackward"
    assert len(calls) == 4 * 4  # 4 steps of 4 stages
    handle = f.net[0].register_forward_hook(lambda m, a, out: None)
    try:
        out = odeint(f, z0, t, method="rk4", gradient="backprop")
    finally:
        handle.remove()
    assert type(out.grad_fn).__name__ != "_FusedFixedBackward"
    out = odeint(f, z0, t, method="rk4", gradient="backprop")
    assert type(out.grad_fn).__name__ == "_FusedFixedBackward"


def test_cases_left_on_todays_path():
    """Adaptive methods, fields that are not MLPs, times that require a gradient."""
    f = _field(3, "tanh", False, torch.float64, n_layers=1)
    z0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = _times(4, 5, torch.float64).abs()
    fused = "_FusedFixedBackward"
    assert type(odeint(f, z0, t, method="dopri5", gradient="backprop").grad_fn).__name__ != fused
    lam = odeint(lambda s, z: f(s, z), z0, t, method="rk4", gradient="backprop")
    assert type(lam.grad_fn).__name__ != fused
    t_grad = t.clone().requires_grad_(True)
    out = odeint(f, z0, t_grad, method="rk4", gradient="backprop")
    assert type(out.grad_fn).__name__ != fused
    out.sum().backward()
    assert t_grad.grad is not None and torch.isfinite(t_grad.grad).all()


@pytest.mark.parametrize("case,step_size", [("overflow", None), ("overflow", 1e-3),
                                             ("budget", None), ("budget", 1e-3)])
def test_failures_are_todays(case, step_size, monkeypatch):
    """A state that overflows and a step budget that runs out raise today's errors."""
    f = _field(3, "elu", True, torch.float32, n_layers=1)
    if case == "overflow":
        with torch.no_grad():
            f.linear.weight.copy_(torch.eye(3) * 2000.0)  # inf in float32 before the last step
    z0 = torch.ones(4, 3, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 6)
    max_steps = {("overflow", None): 10_000, ("overflow", 1e-3): 100, ("budget", None): 3,
                 ("budget", 1e-3): 100}[case, step_size]
    errors = []
    for fused in (True, False):
        monkeypatch.setattr(api, "solve_fixed", solve_fixed if fused else lambda *a, **k: None)
        with pytest.raises(ODESolveError) as err:
            odeint(f, z0, t, method="rk4", gradient="backprop", step_size=step_size,
                   max_steps=max_steps)
        errors.append((str(err.value), err.value.reason, err.value.series))
    assert errors[0] == errors[1]
    assert errors[0][1] == ("non_finite" if case == "overflow" else "max_steps")


def test_retain_graph_and_a_second_backward(monkeypatch, backwards):
    """``retain_graph=True`` allows a second backward with the same gradients; without it the
    saved stages are freed, and a second backward is autograd's usual error."""
    f = _field(4, "tanh", True, torch.float32, n_layers=1)
    z0 = torch.randn(5, 4, requires_grad=True)
    t = _times(5, 6, torch.float32)
    out = odeint(f, z0, t, method="rk4", gradient="backprop").square().sum()
    (first,) = torch.autograd.grad(out, z0, retain_graph=True)
    (second,) = torch.autograd.grad(out, z0)
    assert len(backwards) == 2 and torch.equal(first, second)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(out, z0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_autocast_and_forward_ad_keep_todays_path(backwards):
    """Under CPU autocast or a forward-mode AD level the solve is today's (which autocast and
    dual tensors see through)."""
    f = _field(3, "tanh", False, torch.float32, n_layers=1)
    z0 = torch.randn(4, 3, requires_grad=True)
    t = _times(4, 5, torch.float32).abs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        odeint(f, z0, t, method="rk4", gradient="backprop").float().sum().backward()
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        dual = fwad.make_dual(z0.detach(), torch.ones_like(z0))
        out = odeint(f, dual, t, method="rk4", gradient="backprop")
        tangent = fwad.unpack_dual(out).tangent
    assert tangent is not None and torch.isfinite(tangent).all()
    assert not backwards
