"""Continuous adjoint (Chen et al. 2018) for batched solves at per-series times.

Backward pass: the augmented state ``[z, a]`` (``a = dL/dz``) is integrated backwards from each
series' last requested time to its first, with the same adaptive method and per-series step sizes,
stopping at every requested time of that series, where ``a`` jumps by the incoming gradient and
``z`` is reset to the value stored by the forward pass. Memory is constant in the number of steps.

The parameter integral ``int a^T df/dtheta dt`` is not part of the state (that would need a copy of
the parameters per series): each stage's batched vector-Jacobian product, weighted per series by
``h * b_i``, adds the step's contribution of *all* series at once (see ``_AdjointSystem``).
Error control therefore sees ``[z, a]`` only (a seminorm that leaves the parameter part out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .solve import cuda_graphs_allowed, integrate
from .stepper import factors

Func = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _elu_(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.elu(x, inplace=True)


def _tanh_grad(g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(g, g, y * y, value=-1.0)  # tanh' = 1 - y^2


def _elu_grad(g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return g * (y.clamp(max=0.0) + 1.0)  # elu' = 1 for y > 0, y + 1 (= exp(x)) below


def _softplus_grad(g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # softplus' = sigmoid(x) = 1 - exp(-y); torch's softplus is x itself above x = 20
    return g * torch.where(y > 20.0, 1.0, -torch.expm1(-y))


#: hidden non-linearities of the fields whose adjoint has a hand-written VJP (a field declares
#: one with ``mlp_activation()``): each maps to (the activation in place, the cotangent ``g``
#: times its derivative written with its output ``y``)
MLP_ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor],
                                 Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "tanh": (torch.Tensor.tanh_, _tanh_grad),
    "elu": (_elu_, _elu_grad),
    "softplus": (torch.nn.functional.softplus, _softplus_grad),
}


class _ForwardSystem:
    """``dz/ds = dir * f(dir * s, z)``: any series direction mapped onto increasing ``s``."""

    def __init__(self, func: Func, direction: torch.Tensor) -> None:
        self.func = func
        self.direction = direction
        self.forwards = all_forwards(direction)

    def __call__(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.forwards:  # the products by +1 below: the same numbers, without 3 operations
            return self.func(s, z)
        return self.direction.unsqueeze(-1) * self.func(self.direction * s, z)


def all_forwards(direction: torch.Tensor) -> bool:
    """Whether every series runs forwards (``direction`` all +1): then the systems skip their
    products by the direction, which are exact (one host read per solve, at its start). On the
    CPU only: elsewhere the read would wait for the device (and cannot run inside a captured
    CUDA graph), so the products stay."""
    if direction.device.type != "cpu":
        return False
    return bool((direction > 0).all())


class _AdjointSystem:
    """Augmented backward system in ``r = -s``: ``d[z, a]/dr = [-f_s(z), a^T df_s/dz]``.

    Within a step, stage ``i`` with weight ``b_i != 0`` takes ONE vector-Jacobian product for the
    state and the parameters at once, with ``a`` scaled by ``b_i * h`` per series; the state part
    is rescaled back and the parameter part is the step's contribution of every series. Series
    whose step is then rejected get their contribution removed by re-evaluating their stages
    alone (one small batched product over the rejected rows of all stages).
    """

    def __init__(self, func: Func, direction: torch.Tensor, params: Sequence[torch.Tensor],
                 dim: int, weights: Sequence[float]) -> None:
        self.func = func
        self.direction = direction
        self.params = tuple(params)
        self.dim = dim
        self.weights = tuple(weights)
        self.h: torch.Tensor | None = None
        self.stage = 0
        self.records: list = []
        self.step_grads: list[torch.Tensor] | None = None
        self.param_grads = [torch.zeros_like(p) for p in self.params]
        self.layers, self.skip, activation = _mlp_layers(func, self.params)
        self.act, self.act_grad = MLP_ACTIVATIONS[activation]
        self.forwards = all_forwards(direction)

    def start_step(self, h: torch.Tensor | None) -> None:
        self.h = h
        self.stage = 0
        self.records.clear()
        self.step_grads = None

    def _call_mlp(self, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Hand-written VJP of an MLP field: no autograd graph, parameter part deferred.

        The stage's per-layer output gradients and inputs are kept; :meth:`end_step` forms
        the parameter contributions of the accepted series only, so rejected steps need no
        re-evaluation and no rows are read back from the device.
        """
        layers = self.layers
        z = y[:, : self.dim]
        a = y[:, self.dim :]
        xs = [z]
        for w, bias in layers[:-1]:
            xs.append(self.act(torch.addmm(bias, xs[-1], w.t())))
        w_last, b_last = layers[-1]
        out = torch.addmm(b_last, xs[-1], w_last.t())
        if self.skip is not None:  # f(z) = MLP(z) + A z
            out = out.addmm_(z, self.skip.t())
        d = self.direction.unsqueeze(-1)
        fz = out if self.forwards else d * out  # (a product by +1: the same numbers)
        g = a * d  # cotangent of the field f (contiguous, as the products below expect)
        b = self.weights[self.stage] if self.h is not None else 0.0
        self.stage += 1
        keep = b != 0.0 and bool(self.params)
        if keep:
            b = factors(self.weights, self.h)[self.stage - 1]
        gs = [g]
        for i in range(len(layers) - 1, 0, -1):
            ga = g @ layers[i][0]
            g = self.act_grad(ga, xs[i])
            gs.append(g)
        vjp_z = g @ layers[0][0]
        if self.skip is not None:
            vjp_z = vjp_z.addmm_(gs[0], self.skip)
        if keep:
            self.records.append((b * self.h, gs[::-1], xs))
        return torch.cat([-fz, vjp_z], dim=-1)

    def _f(self, r: torch.Tensor, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return d.unsqueeze(-1) * self.func(-d * r, z)

    def __call__(self, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.layers is not None:
            return self._call_mlp(r, y)
        z = y[:, : self.dim].detach().requires_grad_(True)
        a = y[:, self.dim :]
        b = self.weights[self.stage] if self.h is not None else 0.0
        self.stage += 1
        with torch.enable_grad():
            fz = self._f(r, z, self.direction)
            if b != 0.0 and self.params:
                w = (b * self.h).unsqueeze(-1)
                aw = a * w
                grads = torch.autograd.grad(fz, (z, *self.params), aw, allow_unused=True)
                self.records.append((r, z.detach(), aw))
                w_safe = torch.where(w != 0, w, torch.ones_like(w))
                vjp_z = grads[0] / w_safe if grads[0] is not None else None
                if self.step_grads is None:
                    self.step_grads = [torch.zeros_like(p) for p in self.params]
                for acc, g in zip(self.step_grads, grads[1:]):
                    if g is not None:
                        acc.add_(g)
            else:
                (vjp_z,) = torch.autograd.grad(fz, z, a, allow_unused=True)
        if vjp_z is None:
            vjp_z = torch.zeros_like(a)
        return torch.cat([-fz.detach(), vjp_z], dim=-1)

    def end_step(self, accept: torch.Tensor, done: torch.Tensor) -> None:
        if self.layers is not None:
            if self.records:
                keep = (accept & ~done).to(self.records[0][0].dtype)
                grads = self.param_grads
                # each stage's weight per series, formed once for all the layers
                weights = [(rec[0] * keep).unsqueeze(-1) for rec in self.records]
                for i in range(len(self.layers)):
                    gw = torch.cat([rec[1][i] * w for rec, w in zip(self.records, weights)])
                    x = torch.cat([rec[2][i] for rec in self.records])
                    grads[2 * i].addmm_(gw.t(), x)
                    grads[2 * i + 1].add_(gw.sum(0))
                if self.skip is not None:  # the field's cotangent times the state
                    gw = torch.cat([rec[1][-1] * w for rec, w in zip(self.records, weights)])
                    x = torch.cat([rec[2][0] for rec in self.records])
                    grads[-1].addmm_(gw.t(), x)
            self.records.clear()
            return
        if self.step_grads is None:
            return
        rejected = ~accept & ~done
        if self.direction.device.type == "cpu":
            rows = rejected.nonzero().squeeze(-1)  # free on the CPU: only the rejected rows
            keep = None
        else:  # no host-device sync: every row, the accepted ones weighted by 0
            rows = torch.arange(rejected.shape[0], device=rejected.device)
            keep = rejected.unsqueeze(-1).to(self.records[0][2].dtype)
        if rows.numel():
            # remove the rejected series' contributions: their stages re-evaluated alone
            r = torch.cat([rec[0][rows] for rec in self.records])
            z = torch.cat([rec[1][rows] for rec in self.records])
            aw = torch.cat([rec[2][rows] if keep is None else rec[2] * keep
                            for rec in self.records])
            d = self.direction[rows].repeat(len(self.records))
            with torch.enable_grad():
                fz = self._f(r, z, d)
                corr = torch.autograd.grad(fz, self.params, aw, allow_unused=True)
            for acc, c in zip(self.step_grads, corr):
                if c is not None:
                    acc.sub_(c)
        for tot, g in zip(self.param_grads, self.step_grads):
            tot.add_(g)
        self.records.clear()
        self.step_grads = None


def _mlp_layers(func: Func, params: Sequence[torch.Tensor]):
    """``(layers, A, activation)`` if the field declares itself an autonomous MLP, optionally
    plus a linear term ``A z`` (``func.linear_term()``), whose parameters are exactly
    ``params`` (weight, bias per layer, in order, then ``A``); else ``(None, None, "tanh")``
    (autograd VJPs).

    A field declares its layers with ``mlp_layers()`` and its hidden non-linearity with
    ``mlp_activation()`` (a key of :data:`MLP_ACTIVATIONS`), or, as a tanh MLP, with
    ``tanh_mlp_layers()`` alone.
    """
    getter = getattr(func, "mlp_layers", None)
    activation = "tanh"
    if getter is not None:
        activation = getattr(func, "mlp_activation", lambda: "tanh")()
    else:
        getter = getattr(func, "tanh_mlp_layers", None)
    if getter is None or activation not in MLP_ACTIVATIONS:
        return None, None, "tanh"
    layers = getter()
    skip_getter = getattr(func, "linear_term", None)
    skip = None if skip_getter is None else skip_getter()
    flat = [t for pair in layers for t in pair] + ([] if skip is None else [skip])
    if len(flat) != len(params) or any(p is not q for p, q in zip(flat, params)):
        return None, None, "tanh"
    return layers, skip, activation


class OdeintAdjoint(torch.autograd.Function):
    """``autograd.Function`` whose backward solves the adjoint ODE."""

    @staticmethod
    def forward(ctx, z0, s_out, direction, cfg, adj_cfg, func, *params):  # noqa: D417
        out = integrate(_ForwardSystem(func, direction), z0, s_out, cfg, dense=cfg.tableau.adaptive,
                        time_of=lambda b, s: float(direction[b]) * s)
        ctx.save_for_backward(s_out, direction, out)
        ctx.adj_cfg = adj_cfg
        ctx.func = func
        ctx.n_params = len(params)
        ctx.params = params
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D417
        s_out, direction, out = ctx.saved_tensors
        params = ctx.params
        dim = out.shape[-1]
        # reversed problem in r = -s, increasing
        r_out = (-s_out).flip(1)
        z_rev = out.flip(1)
        g_rev = grad_out.flip(1)
        n_out = r_out.shape[1]
        # equal requested times arrive together: sum their incoming gradients once, at the
        # first position of each run, so that a jump is one gather (not a sum over all times)
        pos = torch.arange(n_out, device=r_out.device).expand_as(r_out)
        new_run = torch.ones_like(r_out, dtype=torch.bool)
        new_run[:, 1:] = r_out[:, 1:] != r_out[:, :-1]
        first = torch.where(new_run, pos, torch.zeros_like(pos)).cummax(1).values
        g_run = torch.zeros_like(g_rev).scatter_add_(
            1, first.unsqueeze(-1).expand_as(g_rev), g_rev)

        def jump(y: torch.Tensor, hit: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            at = index.view(-1, 1, 1).expand(-1, 1, dim)
            hit_c = hit.unsqueeze(-1)
            a = y[:, dim:] + torch.where(hit_c, g_run.gather(1, at).squeeze(1), 0.0)
            z = torch.where(hit_c, z_rev.gather(1, at).squeeze(1), y[:, :dim])
            return torch.cat([z, a], dim=-1)

        start = torch.zeros(r_out.shape[0], dtype=torch.long, device=r_out.device)
        y0 = jump(torch.cat([z_rev[:, 0], torch.zeros_like(z_rev[:, 0])], -1),
                  torch.ones_like(start, dtype=torch.bool), start)
        system = _AdjointSystem(ctx.func, direction, params, dim, ctx.adj_cfg.tableau.b)
        with torch.no_grad():
            # with the hand-written VJP an iteration is a pure tensor program: on CUDA it is
            # captured once and replayed for every step
            graphs = system.layers is not None and cuda_graphs_allowed()
            y_end = integrate(system, y0, r_out, ctx.adj_cfg, dense=False, record=False,
                              jump=jump, time_of=lambda b, r: -float(direction[b]) * r,
                              cuda_graph=graphs)
        grad_z0 = y_end[:, dim:]
        return (grad_z0, None, None, None, None, None, *system.param_grads)
