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
from latentode.nn.observation.tails import (
    CLOSED_FORM_DF,
    CLOSED_FORM_FLOOR,
    t_cdf_torch,
    t_log_pdf,
    with_tails_torch,
)
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
                   torch.tensor([0.0, 1e-300, -1e-300, 1e12, -1e12, 1e200, -1e200, 1e160,
                                 -1e160, math.inf, -math.inf,
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


def _former_calibrated_cdf(self, z, channel, tail_df=None):
    return with_tails_torch(self.standard_cdf(z, channel), z, tail_df, _scipy_t_cdf)


def _former_calibrated_log_pdf(self, z, channel, tail_df=None):
    return with_tails_torch(self.standard_log_pdf(z, channel), z, tail_df,
                            lambda u, df: t_log_pdf(u, df.to(u.dtype)))


@pytest.mark.parametrize("criterion", ["coverage", "likelihood"])
def test_calibration_is_that_of_the_former_tails(monkeypatch, criterion):
    from latentode import data as _data

    est, df = _fitted_tiny()
    vf, padded = est._prepare(df)
    batches = list(_data.iterate_batches(padded, 20))
    results = []
    for former in (False, True):
        if former:
            cls = obs_base.ObservationModel
            monkeypatch.setattr(cls, "calibrated_cdf", _former_calibrated_cdf)
            monkeypatch.setattr(cls, "calibrated_log_pdf", _former_calibrated_log_pdf)
        model = est.model_
        model.gap_spread.reset()
        calibrate_spread(model, batches, n_samples=4, rounds=2, min_tail_values=20,
                         criterion=criterion, generator=torch.Generator().manual_seed(0))
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


# ------------------------------------------------------------------ solver step
def _tableau_coefficients() -> set[float]:
    from latentode.ode.stepper import _DENSE_FACTORS
    from latentode.ode.tableau import DOPRI5_C_MID, TABLEAUS

    out = set(_DENSE_FACTORS) | set(DOPRI5_C_MID)
    for tab in TABLEAUS.values():
        out.update(tab.c, tab.b, tab.b_err or (), *tab.a)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_factors_are_the_floats_and_give_the_same_products(dtype):
    from latentode.ode.stepper import factors

    coeffs = tuple(sorted(_tableau_coefficients()))
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (x * torch.logspace(-30, 30, x.numel(), dtype=torch.float64)).to(dtype)
    got = factors(coeffs, x)
    assert got is factors(coeffs, x)  # made once per (coefficients, dtype)
    for c, f in zip(coeffs, got):
        assert f.dtype == dtype and f.ndim == 0 and float(f) == float(torch.tensor(c, dtype=dtype))
        assert torch.equal(f * x, c * x) and torch.equal(x * f, x * c)
    assert factors(coeffs, x.to(torch.int64)) is coeffs  # not floating point: the floats


def test_step_factors_made_under_inference_mode_serve_training(monkeypatch):
    from latentode.ode import stepper
    from latentode.ode.stepper import factors

    monkeypatch.setattr(stepper, "_FACTORS", {})  # made afresh here
    with torch.inference_mode():
        (half,) = factors((0.5,), torch.ones(3))
    assert not half.is_inference()
    x = torch.ones(3, requires_grad=True)
    (half * x).sum().backward()  # would refuse an inference tensor saved for backward
    assert torch.equal(x.grad, torch.full((3,), 0.5))


def _former_solve(monkeypatch, fn):
    """``fn()`` with the former step arithmetic: Python floats as multipliers, the products by
    the direction even when every series runs forwards."""
    from latentode.ode import adjoint, stepper

    with monkeypatch.context() as m:
        m.setattr(stepper, "factors", lambda coeffs, like: coeffs)
        m.setattr(adjoint, "factors", lambda coeffs, like: coeffs)
        m.setattr(adjoint, "all_forwards", lambda direction: False)
        return fn()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["dopri5", "rk4", "bosh3", "euler"])
@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
@pytest.mark.parametrize("backwards", [False, True])
def test_solver_fast_paths_give_the_former_solves_and_gradients(monkeypatch, dtype, method,
                                                                gradient, backwards):
    from latentode.nn.dynamics import LatentDynamics
    from latentode.ode import odeint

    torch.manual_seed(0)
    func = LatentDynamics(3, n_layers=2, units=8).to(dtype)
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(5, 3, generator=g, dtype=dtype)
    t = torch.rand(5, 7, generator=g, dtype=dtype).cumsum(1)
    if backwards:  # one series backwards in time: the direction's products stay
        t[2] = -t[2]
    lengths = torch.tensor([7, 3, 5, 1, 7])

    def solve():
        z = z0.clone().requires_grad_(True)
        out = odeint(func, z, t, lengths=lengths, method=method, gradient=gradient,
                     step_size=0.3 if method == "euler" else None)
        grads = torch.autograd.grad(out.square().sum(), [z, *func.parameters()])
        return out.detach(), grads

    out, grads = solve()
    want, want_grads = _former_solve(monkeypatch, solve)
    assert torch.equal(out, want)
    assert all(torch.equal(a, b) for a, b in zip(grads, want_grads))


# ------------------------------------------------------------------ neighbour readout
def _former_correct(self, nb, channel, base, latent):
    dtype = base.dtype
    has_p, has_n = nb.has_prev, nb.has_next
    scale = self.log_scale.exp().to(dtype)[channel]

    def decay(gap, has):
        finite = torch.where(has, gap, torch.zeros_like(gap)).to(dtype)
        return has.unsqueeze(-1).to(dtype) * torch.exp(-finite.unsqueeze(-1) / scale)

    interp = nb.interpolate().to(dtype)
    ctx = torch.cat([
        nb.prev_value.to(dtype).unsqueeze(-1), has_p.to(dtype).unsqueeze(-1),
        decay(nb.prev_gap, has_p),
        nb.next_value.to(dtype).unsqueeze(-1), has_n.to(dtype).unsqueeze(-1),
        decay(nb.next_gap, has_n), interp.unsqueeze(-1),
    ], dim=-1)
    hidden = self.context(ctx) + self.channel.to(dtype)[channel]
    hidden = hidden.unsqueeze(0) + base.unsqueeze(-1) * self.base.to(dtype) + latent
    gate, resid = self.out(torch.tanh(hidden)).unbind(-1)
    near = torch.minimum(nb.prev_gap, nb.next_gap)
    near = torch.where(has_p | has_n, near, torch.zeros_like(near)).to(dtype)
    reach = self.log_reach.exp().to(dtype)[channel]
    envelope = (has_p | has_n).to(dtype) * torch.exp(-near / reach)
    return base + envelope * (torch.sigmoid(gate) * (interp - base) + resid)


def _former_forward(self, base, z, cond, query_times, where=None):
    from latentode.nn.readout import Neighbours, channel_neighbours

    nb = channel_neighbours(cond, query_times)
    one = self.one_sided
    active = nb.has_prev | nb.has_next
    if where is not None:
        active &= where.to(dtype=torch.bool)
    parts = ([(self, active)] if one is None else
             [(self, active & nb.has_prev & nb.has_next),
              (one, active & ~(nb.has_prev & nb.has_next))])
    mean = base
    for module, entries in parts:
        b, m, c = entries.nonzero(as_tuple=True)
        if b.numel() == 0:
            continue
        picked = Neighbours(*(field[b, m, c] for field in nb))
        new = _former_correct(module, picked, c, base[:, b, m, c], module.latent(z)[:, b, m])
        mean = base.clone() if mean is base else mean
        mean[:, b, m, c] = new
    return mean


@pytest.mark.parametrize("sides", ["shared", "split"])
@pytest.mark.parametrize("with_where", [False, True])
def test_readout_forward_and_gradients_are_the_former_ones(sides, with_where):
    from latentode.data.batch import Batch
    from latentode.nn.readout import NeighbourReadout

    torch.manual_seed(0)
    # the former forward computed a "split" readout's one-sided queries with one_sided's own
    # parameters: the "copy" layout
    ro = NeighbourReadout(3, 2, units=5, n_scales=3, sides=sides, split="copy").double()
    for p in ro.parameters():  # the output layer starts at 0: make every path count
        torch.nn.init.normal_(p, std=0.5)
    b, n, k = 6, 9, 4
    times = torch.rand(b, n, dtype=torch.float64).cumsum(1)
    mask = (torch.rand(b, n, 2) < 0.5).double()
    mask[0] = 0.0  # a series without observations: nothing is corrected
    cond = Batch(times, torch.randn(b, n, 2, dtype=torch.float64) * mask, mask,
                 torch.tensor([9, 9, 4, 1, 7, 9]))
    query = torch.rand(b, 11, dtype=torch.float64).cumsum(1) - 0.5
    where = (torch.rand(b, 11, 2) < 0.6) if with_where else None
    results = []
    for forward in (NeighbourReadout.forward, _former_forward):
        base = torch.randn(k, b, 11, 2, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1)).requires_grad_()
        z = torch.randn(k, b, 11, 3, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(2)).requires_grad_()
        ro.zero_grad()
        out = forward(ro, base, z, cond, query, where)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append([out.detach(), base.grad, z.grad,
                        *(p.grad.clone() for p in ro.parameters())])
        with torch.no_grad():
            assert torch.equal(forward(ro, base, z, cond, query, where), out)
    for new, old in zip(*results):
        assert torch.equal(new, old)
    assert not torch.equal(results[0][0], base.detach())  # the readout corrected something


# ------------------------------------------------------------------ the benchmark
def test_user_path_benchmark_prints_every_phase(capsys):
    from latentode.utils import torch_threads

    bench = _settings.load_script(_settings.BENCHMARKS / "user_path.py")
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main(["--data", "periodic", "--n-series", "12", "--n-points", "15",
                          "--epochs", "2", "--n-samples", "3", "--horizon", "1.0",
                          *(f"--param={k}={v!r}" for k, v in _settings.TINY.items()
                            if k not in ("max_epochs", "verbose", "random_state"))])
    out = capsys.readouterr().out
    phases = ["fit", "fit: training loop", "fit: calibration", "predict", "predict(quantiles)",
              "extrapolate(horizon)", "sample(n_samples=3)", "score", "save", "load"]
    assert sorted(res["cpu"]) == sorted(phases)
    for name in phases:
        assert res["cpu"][name] >= 0 and res["wall"][name] >= 0
    inner = res["cpu"]["fit: training loop"] + res["cpu"]["fit: calibration"]
    assert 0 < inner <= res["cpu"]["fit"] + 1e-6
    assert res["epochs"] == 2 and res["n_series"] == 12 and res["threads"] == 1
    assert "| fit: training loop (" in out and "| fit: data and other |" in out
    assert "12 series, 180 rows" in out


# ------------------------------------------------------------------ quantiles with tails
def _former_with_tails(own, tail):
    def f(u, tail_df, *own_params):
        df = np.asarray(tail_df, dtype=np.float64)
        shape = np.broadcast_shapes(np.shape(u), df.shape)
        out = np.array(np.broadcast_to(own(u, *own_params), shape), dtype=np.float64)
        df = np.broadcast_to(df, shape)
        finite = np.isfinite(df)
        if finite.any():
            out[finite] = tail(np.broadcast_to(u, shape)[finite], df[finite])
        return out
    return f


@pytest.mark.parametrize("family", ["gaussian", "student_t"])
def test_quantiles_with_tails_are_the_former_ones_within_the_root_tolerance(monkeypatch,
                                                                             family):
    from latentode.nn.observation import GaussianObservation, StudentTObservation
    from latentode.nn.observation import tails as tails_mod

    obs = (GaussianObservation(3, obs_std=0.5) if family == "gaussian"
           else StudentTObservation(3, obs_std=0.5, df=5.0))
    rng = np.random.default_rng(0)
    means = rng.standard_normal((40, 7, 30, 3)) * np.array([1.0, 3.0, 0.2])
    noise = obs.predictive(obs())
    noise["tail_df"] = np.broadcast_to(np.array([3.0, np.inf, 12.0]), (7, 30, 3)).copy()
    noise["tail_df"][:2, :, 1] = 2.0  # per position, not per channel only
    noise["tail_df"][3:, :5, 0] = 1.5  # a tail outside the closed form: scipy's
    levels = np.array([0.02, 0.25, 0.5, 0.9, 0.999])
    new = obs.quantiles(means, noise, levels)

    def former_t_cdf(u, df):
        return stdtr(df, u)

    monkeypatch.setattr(obs_base, "with_tails", _former_with_tails)
    monkeypatch.setattr(obs_base, "t_cdf", former_t_cdf)
    monkeypatch.setattr(tails_mod, "t_cdf", former_t_cdf)
    old = obs.quantiles(means, noise, levels)
    scale = np.broadcast_to(noise["scale"], means.shape[1:])
    assert np.all(np.abs(new - old) <= 5e-8 * scale)  # the root finder's tolerance is 1e-8
    own = ~np.isfinite(noise["tail_df"])
    np.testing.assert_array_equal(new[:, own], old[:, own])  # no tail: the same numbers


# ------------------------------------------------------------------ hooks on the vector field
def _field():
    from latentode.nn.dynamics import LatentDynamics

    torch.manual_seed(0)
    return LatentDynamics(3, n_layers=2, units=8), torch.randn(4, 3)


@pytest.mark.parametrize("where", ["layer", "sequential", "global"])
def test_the_fields_fast_path_honours_forward_hooks(where):
    """A forward hook that doubles a layer's output changes ``f(z)`` exactly as calling the
    modules would (the fast path is taken only without hooks)."""
    from torch.nn.modules.module import register_module_forward_hook

    func, z = _field()
    plain = func(torch.tensor(0.0), z)
    calls = []

    def double(module, args, out):
        calls.append(type(module).__name__)
        return out * 2

    if where == "layer":
        handle = func.net[0].register_forward_hook(double)
        want = func.net[2](func.net[1](func.net[0].forward(z) * 2))
        want = func.net[4](func.net[3](want))
    elif where == "sequential":
        handle = func.net.register_forward_hook(double)
        want = plain * 2
    else:
        handle = register_module_forward_hook(
            lambda m, a, out: double(m, a, out) if m is func.net else out)
        want = plain * 2
    try:
        got = func(torch.tensor(0.0), z)
    finally:
        handle.remove()
    assert calls, "the hook was not called"
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got, plain)
    assert torch.equal(func(torch.tensor(0.0), z), plain)  # hook removed: the fast path again


def test_the_fields_fast_path_is_left_when_torch_names_its_hooks_otherwise(monkeypatch):
    """Should a torch version rename the hook dictionaries ``_hooked`` reads, the modules are
    called (the slow, always-right path), not skipped."""
    from torch.nn.modules import module as torch_module

    from latentode.nn import dynamics
    from latentode.ode import hooks

    func, _ = _field()
    assert not dynamics._hooked(func.net)
    monkeypatch.delattr(torch_module, "_global_forward_hooks")
    hooks.hook_dicts_known.cache_clear()
    try:
        assert dynamics._hooked(func.net)
    finally:
        monkeypatch.undo()
        hooks.hook_dicts_known.cache_clear()
    assert not dynamics._hooked(func.net)
