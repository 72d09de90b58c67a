"""Fused fixed-step solves of MLP fields: the whole solve in one pass, a hand-written backward.

With a fixed-step method (``rk4``, ``euler``) the grid of every series is known before the first
step: it depends on the requested times and ``step_size`` only, never on the state. For a field
that declares itself an autonomous MLP (``mlp_layers()``, see :func:`.adjoint._mlp_layers`) the
solve is then a fixed sequence of small products, and this module runs it without the solver's
per-iteration bookkeeping and without an autograd tape:

* :func:`_schedule` lays out the step sizes ``h`` ``(L, B)`` of every iteration and the step at
  which each requested time is reached, with the arithmetic of :func:`.solve.integrate` (a closed
  form when every step is clipped to the next requested time, ``step_size=None``; the solver's own
  loop over ``(B,)`` tensors otherwise).
* :func:`_forward` takes the steps under ``no_grad`` with the same operations as
  :func:`.stepper.rk_step` and the field's layers (the same numbers, to the bit), keeping every
  stage's layer inputs when a gradient is needed.
* :class:`_FusedFixed` is the ``autograd.Function`` whose backward (:func:`_backward`) is the
  exact discrete adjoint of the Runge-Kutta steps: each step's stages in reverse, the MLP's
  vector-Jacobian products written by hand (the activations' derivatives of
  :data:`.adjoint.MLP_ACTIVATIONS`), the state gradient propagated step by step and each step's
  weight gradients formed by one matrix product per layer over its ``S * B`` rows.

:func:`solve_fixed` is the entry point :func:`.api.odeint` calls; it answers None (today's path:
:func:`.solve.integrate` through autograd) for every case it does not cover: adaptive methods,
fields without ``mlp_layers``, hooks on the field, tensors not on the CPU, times that require a
gradient, autocast, forward-mode AD or functorch transforms, a step budget that would be
exceeded, and any non-finite state (today's path then raises or returns what it did). A second
derivative (``create_graph=True``) is computed by today's path, re-run inside the backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .adjoint import MLP_ACTIVATIONS, _ForwardSystem, _mlp_layers, all_forwards
from .hooks import hooked
from .solve import SolverConfig, clip_step, integrate, next_time
from .stepper import _combine, factors
from .tableau import ButcherTableau

__all__ = ["solve_fixed"]


@dataclass
class _Run:
    """A fused forward solve: its output and what the backward needs."""

    out: torch.Tensor | None  # (B, N, D) states at the requested times
    h: torch.Tensor  # (L, B) step sizes (0: a finished series)
    step_of: torch.Tensor  # (B, N) the step after which each requested time is reached
    # per layer, its (B, in_width) input at every stage of every step (step-major); kept as
    # they came: stacking them all would be one large allocation per solve, whose fresh pages
    # cost more than the copies (the backward stacks one step at a time)
    xs: list[list[torch.Tensor]] | None
    tab: ButcherTableau
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    skip: torch.Tensor | None
    activation: str
    direction: torch.Tensor
    forwards: bool
    # today's path, for a second derivative
    func: nn.Module | None = None
    s_out: torch.Tensor | None = None
    cfg: SolverConfig | None = None


def solve_fixed(
    func: object,
    z0: torch.Tensor,
    s_out: torch.Tensor,
    direction: torch.Tensor,
    cfg: SolverConfig,
) -> torch.Tensor | None:
    """The fused fixed-step solve of :func:`.api.odeint`'s backprop path, or None.

    Parameters
    ----------
    func : object
        The field ``func(t, z)``; fused only for a :class:`torch.nn.Module` whose parameters are
        exactly those of its ``mlp_layers()`` (and ``linear_term()``) and that has no hooks.
    z0 : torch.Tensor
        ``(B, D)`` initial states.
    s_out : torch.Tensor
        ``(B, N)`` normalised (non-decreasing) requested times, padding forward-filled.
    direction : torch.Tensor
        ``(B,)`` +1 / -1: each series' direction in time.
    cfg : SolverConfig
        A fixed-step method and its ``step_size`` / ``max_steps``.

    Returns
    -------
    torch.Tensor or None
        ``(B, N, D)`` the states at ``s_out``, equal to :func:`.solve.integrate`'s to the bit,
        with gradients by the discrete adjoint of the steps when grad mode is on and ``z0`` or a
        parameter requires grad; None where this path does not apply (the caller then runs
        :func:`.solve.integrate`).
    """
    tab = cfg.tableau
    if tab.adaptive or z0.device.type != "cpu" or not isinstance(func, nn.Module):
        return None
    params = list(func.parameters())
    layers, skip, activation = _mlp_layers(func, params)
    if layers is None or any(b is None for _, b in layers):
        return None
    if any(p.dtype != z0.dtype or p.device != z0.device for p in params):
        return None
    if hooked(func.modules()) or _transformed(z0, s_out, direction):
        return None
    schedule = _schedule(s_out, cfg)
    if schedule is None:
        return None
    h, step_of = schedule
    need_grad = torch.is_grad_enabled() and (z0.requires_grad
                                             or any(p.requires_grad for p in params))
    forwards = all_forwards(direction)  # the CPU's answer (this path runs on the CPU only)
    with torch.no_grad():
        run = _forward(tab, layers, skip, activation, direction, forwards, z0, h, step_of,
                       save=need_grad)
    if run is None:
        return None
    if not need_grad:
        return run.out
    run.func, run.s_out, run.cfg = func, s_out, cfg
    return _FusedFixed.apply(run, z0, *params)


def _transformed(*tensors: torch.Tensor) -> bool:
    """Whether anything beyond plain reverse-mode autograd could see the solve: autocast, a
    forward-mode AD level, a functorch transform, or times that require a gradient."""
    try:
        autocast = torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        autocast = torch.is_autocast_cpu_enabled()
    if autocast or getattr(torch.autograd.forward_ad, "_current_level", 0) >= 0:
        return True
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    if peek is None or peek() is not None:
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors[1:])


def _schedule(s_out: torch.Tensor, cfg: SolverConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The step sizes ``(L, B)`` and the step of each requested time ``(B, N)`` of
    :func:`.solve.integrate`'s fixed-step stop mode, or None if its step budget could run out.

    Step ``k`` of a series starts where step ``k - 1`` ended; a finished series takes steps of
    length 0. With ``step_size=None`` every step lands on the next distinct requested time, so
    ``h`` is the difference of consecutive distinct times (the solver's ``target - s``) and a
    requested time is reached after as many steps as distinct times precede it.
    """
    batch, n_out = s_out.shape
    if cfg.step_size is None:
        change = (s_out[:, 1:] != s_out[:, :-1]).long()
        step_of = torch.cat([torch.zeros_like(change[:, :1]), change.cumsum(1)], 1)
        counts = step_of[:, -1]
        n_steps = int(counts.max()) if n_out > 1 else 0
        if n_steps > cfg.max_steps:
            return None
        # the first time of each run of equal times: the solver's target when it gets there
        pos = torch.arange(n_out, device=s_out.device).expand(batch, -1)
        first = torch.full((batch, n_steps + 1), n_out - 1, dtype=torch.long,
                           device=s_out.device).scatter_reduce_(1, step_of, pos, "amin")
        starts = s_out.gather(1, first)
        diff = starts[:, 1:] - starts[:, :-1]
        live = torch.arange(n_steps, device=s_out.device).unsqueeze(0) < counts.unsqueeze(1)
        h = torch.where(live, diff, torch.zeros_like(diff)).t().contiguous()
        return h, step_of
    # a step size: the solver's own arithmetic, on (B,) tensors
    s = s_out[:, 0].clone()
    s_end = s_out[:, -1]
    done = s >= s_end
    h = torch.full_like(s, cfg.step_size)
    zero_h = torch.zeros_like(h)
    step_of = torch.zeros(batch, n_out, dtype=torch.long, device=s_out.device)
    hs: list[torch.Tensor] = []
    while not bool(done.all()):
        if len(hs) > cfg.max_steps:
            return None
        _, target = next_time(s, s_out)
        clipped, h_eff, s_new = clip_step(s, h, target, done, zero_h)
        hit = ~done & clipped
        hs.append(h_eff)
        arrived = (s_out == target.unsqueeze(1)) & hit.unsqueeze(1)
        step_of = torch.where(arrived, len(hs), step_of)
        s = s_new
        done = s >= s_end
    if not hs:
        return s_out.new_zeros(0, batch), step_of
    return torch.stack(hs), step_of


def _forward(
    tab: ButcherTableau,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    skip: torch.Tensor | None,
    activation: str,
    direction: torch.Tensor,
    forwards: bool,
    z0: torch.Tensor,
    h: torch.Tensor,
    step_of: torch.Tensor,
    *,
    save: bool,
) -> _Run | None:
    """The steps of :func:`.stepper.rk_step` with the field's layers written out (no grad);
    None if a state is not finite (today's path then says what it says)."""
    n_steps, batch = h.shape
    n_stages = tab.n_stages
    act = MLP_ACTIVATIONS[activation][0]
    w_t = [w.t() for w, _ in layers]
    skip_t = None if skip is None else skip.t()
    d = direction.unsqueeze(-1)
    # every product reads and writes tensors of their own, as today's path does: a matrix
    # product's last bits can depend on where its operands lie in memory (their alignment), so
    # the inputs the backward needs are kept as they come
    states = [z0]
    saved: list[list[torch.Tensor]] | None = [[] for _ in layers] if save else None

    def field(z: torch.Tensor) -> torch.Tensor:
        x = z
        if saved is not None:
            saved[0].append(z)
        for j, (_, b) in enumerate(layers[:-1]):
            x = act(torch.addmm(b, x, w_t[j]))
            if saved is not None:
                saved[j + 1].append(x)
        out = torch.addmm(layers[-1][1], x, w_t[-1])
        if skip_t is not None:  # LatentDynamics: out + linear(z), a bias-free linear: mm
            out = out + torch.mm(z, skip_t)
        return out if forwards else d * out

    for k in range(n_steps):
        y = states[k]
        hc = h[k].unsqueeze(-1)
        ks = [field(y)]
        for i in range(1, n_stages):
            incr = _combine(tab.a[i], ks)
            yi = y if incr is None else y + hc * incr
            ks.append(field(yi))
        states.append(y + hc * _combine(tab.b, ks))
    states = torch.stack(states)  # (L + 1, B, D)
    if not bool(torch.isfinite(states).all()):
        return None
    stacked = states.transpose(0, 1)  # (B, L + 1, D)
    out = stacked.gather(1, step_of.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
    return _Run(out=out, h=h, step_of=step_of, xs=saved, tab=tab, layers=layers, skip=skip,
                activation=activation, direction=direction, forwards=forwards)


def _backward(run: _Run, xs: Sequence[Sequence[torch.Tensor]],
              grad_out: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The discrete adjoint of the steps of ``run`` (``xs``: its stages' inputs per layer):
    the gradients of ``z0`` and of the parameters (weight, bias per layer, then the linear
    term's matrix).

    Step by step in reverse, each step's stages in reverse: the cotangent of stage ``i``'s
    derivative is ``k_bar_i = h (b_i y_bar + sum_{j > i} a_ji Y_bar_j)``, its state's gradient
    ``Y_bar_i`` the MLP's vector-Jacobian product of it, and ``y_bar`` before the step is
    ``y_bar + sum_i Y_bar_i`` plus the gradient of the requested times reached there. The weight
    gradients of a step are one product per layer over its ``S * B`` rows.
    """
    tab, layers, skip = run.tab, run.layers, run.skip
    h = run.h
    n_steps, batch = h.shape
    dim = grad_out.shape[-1]
    n_stages = tab.n_stages
    act_grad = MLP_ACTIVATIONS[run.activation][1]
    d = run.direction.unsqueeze(-1)
    # the incoming gradient of every state (requested times reached after the same step summed)
    g_states = grad_out.new_zeros(n_steps + 1, batch, dim)
    g_states.scatter_add_(0, run.step_of.t().unsqueeze(-1).expand(-1, -1, dim),
                          grad_out.transpose(0, 1))
    # each layer's output cotangents at the stages of one step (reused by every step); a stage
    # whose cotangent is zero leaves its rows alone (none for rk4 and euler: every b_i != 0)
    g_step = [grad_out.new_zeros(n_stages, batch, w.shape[0]) for w, _ in layers]
    reset = any(b == 0.0 for b in tab.b)
    grads = [torch.zeros_like(t) for pair in layers for t in pair]
    g_sums = [torch.zeros_like(g) for g in g_step]  # the biases' gradients, summed at the end
    g_skip = None if skip is None else torch.zeros_like(skip)
    one = grad_out.new_ones(())
    b_f = factors(tab.b, grad_out)
    # stage j's state gradient feeds the cotangents of the stages i < j with a_ji != 0; one that
    # feeds none (stage 0, the only stage of euler) goes straight into the state's gradient
    feeds = [any(i < len(tab.a[j]) and tab.a[j][i] != 0.0 for i in range(j))
             for j in range(n_stages)]
    w0 = layers[0][0]
    ybar = g_states[n_steps].clone()
    for k in range(n_steps - 1, -1, -1):
        rows = slice(k * n_stages, (k + 1) * n_stages)
        x_step = [torch.stack(x[rows]) for x in xs]  # (S, B, in_width) per layer
        # the activations' derivatives at the step's stages (functions of their outputs)
        slopes = [None] + [act_grad(one.expand_as(x), x) for x in x_step[1:]]
        if reset:
            for g in g_step:
                g.zero_()
        hc = h[k].unsqueeze(-1)
        stage_bar: list[torch.Tensor | None] = [None] * n_stages
        total = ybar + g_states[k]
        for i in range(n_stages - 1, -1, -1):
            acc = torch.mul(ybar, b_f[i]) if tab.b[i] != 0.0 else None
            for j in range(i + 1, n_stages):
                a_ji = tab.a[j][i] if i < len(tab.a[j]) else 0.0
                if a_ji != 0.0 and stage_bar[j] is not None:
                    acc = (stage_bar[j] * a_ji if acc is None
                           else acc.add_(stage_bar[j], alpha=a_ji))
            if acc is None:
                continue
            g = torch.mul(acc, hc, out=g_step[-1][i])
            if not run.forwards:
                g.mul_(d)
            g_last = g
            for j in range(len(layers) - 1, 0, -1):
                g = torch.mul(torch.mm(g, layers[j][0]), slopes[j][i], out=g_step[j - 1][i])
            if feeds[i]:
                bar = torch.mm(g, w0)
                if skip is not None:
                    bar = bar.addmm_(g_last, skip)
                stage_bar[i] = bar
                total.add_(bar)
            else:
                total.addmm_(g, w0)
                if skip is not None:
                    total.addmm_(g_last, skip)
        ybar = total
        for j, (w, _) in enumerate(layers):
            grads[2 * j].addmm_(g_step[j].view(-1, w.shape[0]).t(),
                                x_step[j].view(-1, w.shape[1]))
            g_sums[j].add_(g_step[j])
        if g_skip is not None:
            g_skip.addmm_(g_step[-1].view(-1, dim).t(), x_step[0].view(-1, dim))
    for j, g in enumerate(g_sums):
        grads[2 * j + 1] = g.view(-1, g.shape[-1]).sum(0)
    if g_skip is not None:
        grads.append(g_skip)
    return ybar, grads


class _FusedFixed(torch.autograd.Function):
    """Returns a fused forward solve's output; its backward is :func:`_backward`."""

    @staticmethod
    def forward(ctx, run: _Run, z0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:  # noqa: D417
        # the stages' inputs as saved tensors: freed after the backward like autograd's own,
        # and the parameters too, so that changing one in place before the backward is an error
        ctx.n_params = len(params)
        ctx.save_for_backward(z0, *params, *(x for layer in run.xs for x in layer))
        ctx.run, ctx.widths = run, [len(layer) for layer in run.xs]
        out, run.out, run.xs = run.out, None, None  # the output is not kept by its own node
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D417
        run = ctx.run
        saved = ctx.saved_tensors
        z0, params = saved[0], saved[1:1 + ctx.n_params]
        if torch.is_grad_enabled():  # create_graph=True: today's path, differentiable again
            return (None, *_through_integrate(run, z0, params, grad_out, ctx.needs_input_grad))
        xs, at = [], 1 + ctx.n_params
        for n in ctx.widths:
            xs.append(saved[at:at + n])
            at += n
        grad_z0, grads = _backward(run, xs, grad_out.contiguous())
        needs = ctx.needs_input_grad
        return (None, grad_z0 if needs[1] else None,
                *(g if need else None for g, need in zip(grads, needs[2:])))


def _through_integrate(run: _Run, z0: torch.Tensor, params: list[torch.Tensor],
                       grad_out: torch.Tensor, needs: tuple[bool, ...]) -> list:
    """The gradients by autograd through :func:`.solve.integrate` (a graph of its own, so that
    they can be differentiated again)."""
    system = _ForwardSystem(run.func, run.direction)
    out = integrate(system, z0, run.s_out, run.cfg, dense=False,
                    time_of=lambda b, s: float(run.direction[b]) * s)
    inputs = [t for t, need in zip((z0, *params), needs[1:]) if need]
    grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True,
                                     allow_unused=True))
    return [next(grads) if need else None for need in needs[1:]]
