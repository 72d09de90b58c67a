"""The ODE-RNN recurrence as one fused scan: Euler flow of a tanh MLP between GRU jumps.

The ODE-RNN encoder (Rubanova et al., 2019) runs backwards over each series' observations: the
hidden state follows ``dh/dt = f(h)`` (explicit Euler, largest step ``step_size``) from one
observation to the previous one and jumps there by a GRU update. Written with autograd, every
observation costs about 30 small operations forwards and 60 backwards plus one autograd node each,
and a batch's loop length is the *sum over intervals of the largest substep count in the batch*.
This module does the same arithmetic with fewer, larger pieces:

* :func:`event_schedule` lays every series' substeps and jumps out on one per-series event grid
  (event ``j`` of series ``b``: one Euler substep of length ``dt[j, b]``, then the GRU jump if
  ``jump[j, b]``), so the loop length is the *largest per-series total* and each event is the same
  fixed sequence of operations for every series (finished series take zero-length steps and no
  jump). Building it reads one number back from the device (the loop length).
* :func:`odernn_scan` runs the events in one :class:`torch.autograd.Function` with a hand-written
  backward pass: the forward stores each event's activations in preallocated ``(L, B, .)``
  buffers; the backward walks the events in reverse propagating only the state gradient, and
  forms every weight gradient at the end with one matrix product over all ``L * B`` rows. No
  autograd graph is built inside the loop.
* On CUDA, the forward and backward loops are pure tensor programs with static shapes, so they are
  captured once per shape as CUDA graphs and replayed (one launch per loop instead of thousands);
  see :class:`ScanGraphs`.

:func:`latentode.ode.evolve` plus an autograd GRU step is the reference this is tested against
(values and gradients, forwards and backwards in time, ragged batches).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .padded import hold_last
from .solve import cuda_graphs_allowed

__all__ = ["EventSchedule", "event_schedule", "odernn_scan", "ScanGraphs", "GRUParams"]


class EventSchedule(NamedTuple):
    """Per-series event grid of a scan (all ``(L, B)``, event-major).

    Attributes
    ----------
    dt : torch.Tensor
        Euler substep length of each event (0: no flow; padding events are 0).
    jump : torch.Tensor
        Bool, apply the GRU jump after the substep.
    index : torch.Tensor
        Long, position (in the padded observation axis) whose input the jump reads.
    """

    dt: torch.Tensor
    jump: torch.Tensor
    index: torch.Tensor


class GRUParams(NamedTuple):
    """Weights of the GRU jump ``h' = n + u (h - n)`` (see ``latentode.nn.GRUUpdate``).

    ``[u, r] = sigmoid(W_go tanh(x_g + W_gh h) + b_go)``, ``n = W_co tanh(x_c + W_ch (r h)) +
    b_co``; ``x_g`` and ``x_c`` are the two halves of the projected input.
    """

    w_gh: torch.Tensor
    w_go: torch.Tensor
    b_go: torch.Tensor
    w_ch: torch.Tensor
    w_co: torch.Tensor
    b_co: torch.Tensor


def event_schedule(
    times: torch.Tensor,
    lengths: torch.Tensor,
    do_jump: torch.Tensor,
    t0: torch.Tensor,
    step_size: float | None,
    min_events: int = 0,
    multiple: int = 1,
) -> EventSchedule:
    """Event grid of the backward ODE-RNN recurrence.

    Series ``b`` visits its valid positions ``i = lengths[b] - 1, ..., 0``; before the jump at
    ``i`` it flows from ``times[b, i + 1]`` (its own time for the last position) to
    ``times[b, i]`` in ``n = max(1, ceil(|gap| / step_size))`` equal Euler substeps (exactly the
    substeps of :func:`latentode.ode.evolve`), and after the jump at position 0 it flows from
    ``times[b, 0]`` to ``t0[b]`` the same way. Without ``step_size`` (a GRU without flow) each
    position is one event of length 0 and there is no final flow.

    Parameters
    ----------
    times : torch.Tensor
        ``(B, N)`` ascending times over each series' valid prefix.
    lengths : torch.Tensor
        ``(B,)`` valid positions per series (``>= 1``).
    do_jump : torch.Tensor
        ``(B, N)`` bool: whether position ``i`` has an observation to jump on.
    t0 : torch.Tensor
        ``(B,)`` end of the final flow.
    step_size : float or None
        Largest Euler substep; None for no flow.
    min_events, multiple : int
        The grid has at least ``min_events`` events, rounded up to a multiple of ``multiple``
        (trailing events are no-ops), so that shapes repeat across batches (CUDA graphs).

    Returns
    -------
    EventSchedule
    """
    b, n = times.shape
    dev = times.device
    lengths = lengths.to(device=dev, dtype=torch.long)
    k = torch.arange(n, device=dev).unsqueeze(0)
    times, valid, _ = hold_last(times, lengths)
    t_next = torch.cat([times[:, 1:], times[:, -1:]], dim=1)
    pos = (lengths.unsqueeze(1) - 1 - k).clamp(min=0)  # event order k -> position i
    t_from = t_next.gather(1, pos)
    t_to = times.gather(1, pos)
    jump = do_jump.gather(1, pos) & valid
    if step_size is not None:
        count = torch.ceil((t_to - t_from).abs() / step_size).clamp(min=1.0)
        count = torch.where(valid, count, torch.zeros_like(count)).long()
        first = times[:, :1]
        tail = t0.to(times.dtype).unsqueeze(1)
        n0 = torch.ceil((tail - first).abs() / step_size).clamp(min=1.0).long()
        count = torch.cat([count, n0], 1)
        t_from = torch.cat([t_from, first], 1)
        t_to = torch.cat([t_to, tail], 1)
        jump = torch.cat([jump, torch.zeros_like(jump[:, :1])], 1)
        pos = torch.cat([pos, torch.zeros_like(pos[:, :1])], 1)
    else:
        count = valid.long()
    cum = count.cumsum(1)
    total = cum[:, -1]
    n_events = max(int(total.max()), int(min_events), 1)  # the one read-back
    n_events = -(-n_events // multiple) * multiple
    j = torch.arange(n_events, device=dev).unsqueeze(0).expand(b, -1)
    seg = torch.searchsorted(cum, j.contiguous(), right=True).clamp(max=cum.shape[1] - 1)
    seg_count = count.gather(1, seg)
    within = j - (cum.gather(1, seg) - seg_count)
    live = j < total.unsqueeze(1)
    gap = (t_to - t_from).gather(1, seg)
    dt = torch.where(live, gap / seg_count.clamp(min=1).to(gap.dtype), torch.zeros_like(gap))
    if step_size is None:
        dt = torch.zeros_like(dt)
    jmp = live & (within == seg_count - 1) & jump.gather(1, seg)
    index = pos.gather(1, seg)
    return EventSchedule(dt.t().contiguous(), jmp.t().contiguous(), index.t().contiguous())


# ---------------------------------------------------------------------------- the two loops
def _forward_loop(xe, dt, jump, flow, gru, bufs, h_out, states=None):
    """Run the events; fill ``bufs`` (activations) when given; write the final state, and the
    state after every event into ``states`` ``(L, B, hidden)`` when given (with ``bufs``, they
    are ``bufs["h"][1:]`` already)."""
    w_gh, w_go, b_go, w_ch, w_co, b_co = gru
    hid = w_co.shape[0]
    units = w_gh.shape[0]
    n_events = xe.shape[0]
    h = (bufs["h"][0] if bufs is not None else h_out).zero_()  # the recurrence starts from 0
    dtc = dt.unsqueeze(-1)
    jumpc = jump.unsqueeze(-1)
    for j in range(n_events):
        if flow:
            x = h
            for i, (w, bias) in enumerate(flow[:-1]):
                a = (torch.addmm(bias, x, w.t(), out=bufs["a"][i][j]) if bufs is not None
                     else torch.addmm(bias, x, w.t()))
                x = a.tanh_()
            w, bias = flow[-1]
            f = torch.addmm(bias, x, w.t())
            hp = (torch.addcmul(h, dtc[j], f, out=bufs["hp"][j]) if bufs is not None
                  else torch.addcmul(h, dtc[j], f))
        else:
            hp = h
        xg = xe[j, :, :units]
        xc = xe[j, :, units:]
        if bufs is not None:
            g = torch.addmm(xg, hp, w_gh.t(), out=bufs["g"][j]).tanh_()
            s = torch.addmm(b_go, g, w_go.t(), out=bufs["s"][j]).sigmoid_()
            rh = torch.mul(s[:, hid:], hp, out=bufs["rh"][j])
            c = torch.addmm(xc, rh, w_ch.t(), out=bufs["c"][j]).tanh_()
            nn_ = torch.addmm(b_co, c, w_co.t(), out=bufs["n"][j])
            h = torch.where(jumpc[j], torch.lerp(nn_, hp, s[:, :hid]), hp, out=bufs["h"][j + 1])
        else:
            g = torch.addmm(xg, hp, w_gh.t()).tanh_()
            s = torch.addmm(b_go, g, w_go.t()).sigmoid_()
            c = torch.addmm(xc, s[:, hid:] * hp, w_ch.t()).tanh_()
            nn_ = torch.addmm(b_co, c, w_co.t())
            h = torch.where(jumpc[j], torch.lerp(nn_, hp, s[:, :hid]), hp)
            if states is not None:
                states[j].copy_(h)
    h_out.copy_(h)


def _backward_loop(grad_h, dt, jump, flow, gru, bufs, gbufs, grad_states=None):
    """Reverse sweep: state gradients per event into ``gbufs`` (weight grads formed later).

    ``grad_states`` ``(L, B, hidden)``: the gradient of the state after each event (the scan's
    second output), added to the state gradient as the sweep reaches that event."""
    w_gh, w_go, b_go, w_ch, w_co, b_co = gru
    hid = w_co.shape[0]
    n_events = dt.shape[0]
    dtc = dt.unsqueeze(-1)
    jumpf = jump.unsqueeze(-1).to(grad_h.dtype)
    gh = grad_h.clone()
    gs = torch.empty(gh.shape[0], 2 * hid, dtype=gh.dtype, device=gh.device)
    for j in range(n_events - 1, -1, -1):
        if grad_states is not None:
            gh += grad_states[j]
        hp = bufs["hp"][j] if flow else bufs["h"][j]
        s = bufs["s"][j]
        u = s[:, :hid]
        ghn = gh * jumpf[j]
        ghp = gh - ghn
        gnu = ghn * u
        gn = torch.sub(ghn, gnu, out=gbufs["n"][j])
        ghp += gnu
        torch.mul(ghn, hp - bufs["n"][j], out=gs[:, :hid])  # d/du
        gc = gn @ w_co
        c = bufs["c"][j]
        gpc = torch.addcmul(gc, gc, c * c, value=-1.0, out=gbufs["c"][j])
        grh = gpc @ w_ch
        torch.mul(grh, hp, out=gs[:, hid:])  # d/dr
        ghp.addcmul_(grh, s[:, hid:])
        gps = torch.mul(gs, s - s * s, out=gbufs["s"][j])
        gg = gps @ w_go
        g = bufs["g"][j]
        gpg = torch.addcmul(gg, gg, g * g, value=-1.0, out=gbufs["g"][j])
        ghp.addmm_(gpg, w_gh)
        if flow:
            # back through the flow: g is the gradient at the output of layer i
            g = torch.mul(ghp, dtc[j], out=gbufs["f"][j])
            for i in range(len(flow) - 1, 0, -1):
                ga = g @ flow[i][0]
                a = bufs["a"][i - 1][j]
                g = torch.addcmul(ga, ga, a * a, value=-1.0, out=gbufs["a"][i - 1][j])  # tanh'
            ghp.addmm_(g, flow[0][0])
        gh = ghp


def _alloc(n_events, batch, flow, gru, like):
    hid = gru[4].shape[0]
    units = gru[0].shape[0]

    def e(*shape):
        return torch.empty(*shape, dtype=like.dtype, device=like.device)

    bufs = {"h": e(n_events + 1, batch, hid), "g": e(n_events, batch, units),
            "s": e(n_events, batch, 2 * hid), "rh": e(n_events, batch, hid),
            "c": e(n_events, batch, gru[3].shape[0]), "n": e(n_events, batch, hid),
            "a": [e(n_events, batch, w.shape[0]) for w, _ in flow[:-1]] if flow else [],
            "hp": e(n_events, batch, hid) if flow else None}
    gbufs = {"n": e(n_events, batch, hid), "c": e(n_events, batch, gru[3].shape[0]),
             "s": e(n_events, batch, 2 * hid), "g": e(n_events, batch, units),
             "f": e(n_events, batch, hid) if flow else None,
             "a": [e(n_events, batch, w.shape[0]) for w, _ in flow[:-1]] if flow else []}
    return bufs, gbufs


def _weight_grads(flow, bufs, gbufs):
    """Every weight gradient as one product over all events and series."""

    def outer(g, x):
        return g.reshape(-1, g.shape[-1]).t() @ x.reshape(-1, x.shape[-1])

    def colsum(g):
        return g.sum((0, 1))

    hp = bufs["hp"] if flow else bufs["h"][:-1]
    grads_gru = [outer(gbufs["g"], hp), outer(gbufs["s"], bufs["g"]), colsum(gbufs["s"]),
                 outer(gbufs["c"], bufs["rh"]), outer(gbufs["n"], bufs["c"]),
                 colsum(gbufs["n"])]
    grads_flow = []
    if flow:
        inputs = [bufs["h"][:-1], *bufs["a"]]
        gouts = [*gbufs["a"], gbufs["f"]]
        for x, g in zip(inputs, gouts):
            grads_flow += [outer(g, x), colsum(g)]
    gxe = torch.cat([gbufs["g"], gbufs["c"]], dim=-1)
    return gxe, grads_flow, grads_gru


class ScanGraphs:
    """CUDA graphs of the scan's two loops, one pair per (events, batch, widths, dtype) shape.

    Each entry holds static input buffers (``xe``, ``dt``, ``jump``, ``grad_h``), the activation
    buffers and the captured forward and backward loops; a call copies its inputs into the static
    buffers and replays. Parameters are read in place (the optimiser updates them in place), so an
    entry is keyed on their storage addresses too; entries whose parameters were freed are
    dropped, and at most ``max_entries`` are kept (oldest first out). Disabled with
    ``LATENTODE_CUDA_GRAPHS=0``.
    """

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self.entries: dict[tuple, dict] = {}
        self.broken = False

    @staticmethod
    def enabled(device: torch.device) -> bool:
        return device.type == "cuda" and cuda_graphs_allowed()

    def entry(self, xe, dt, jump, flow, gru, states=False):
        """A free entry for this shape (captured on first use), or None if all are in use.

        An entry is in use from a forward pass until its backward pass (or until the autograd
        graph that would run it is freed): its activation buffers belong to that pass.
        ``states``: the scan also returns the state after every event, so the captured
        backward loop reads their gradient from the static buffer ``grad_states``.
        """
        # entries of networks that no longer exist only hold memory: drop them
        dead = [k for k, e in self.entries.items() if any(r() is None for r in e["params"])]
        for k in dead:
            del self.entries[k]
        base = (tuple(xe.shape), xe.dtype, xe.device,
                tuple(p.data_ptr() for pair in flow for p in pair),
                tuple(p.data_ptr() for p in gru), bool(states))
        for slot in range(2):
            key = (*base, slot)
            ent = self.entries.get(key)
            if ent is None:
                break
            owner = ent["owner"]
            if owner is None or owner() is None:
                return ent
        else:
            return None
        if len(self.entries) >= self.max_entries:
            self.entries.pop(next(iter(self.entries)))
        n_events, batch, width = xe.shape
        hid = gru[4].shape[0]
        bufs, gbufs = _alloc(n_events, batch, flow, gru, xe)
        ent = {"xe": xe.detach().clone(), "dt": dt.clone(), "jump": jump.clone(),
               "h": torch.empty(batch, hid, dtype=xe.dtype, device=xe.device),
               "grad_h": torch.zeros(batch, hid, dtype=xe.dtype, device=xe.device),
               "grad_states": (torch.zeros(n_events, batch, hid, dtype=xe.dtype,
                                           device=xe.device) if states else None),
               "bufs": bufs, "gbufs": gbufs, "owner": None,
               "params": [weakref.ref(p) for pair in flow for p in pair]
               + [weakref.ref(p) for p in gru]}
        fwd = torch.cuda.CUDAGraph()
        bwd = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device=xe.device)
        stream.wait_stream(torch.cuda.current_stream(xe.device))
        with torch.cuda.stream(stream), torch.no_grad():
            # warm up once outside capture (allocator, cuBLAS handles)
            _forward_loop(ent["xe"], ent["dt"], ent["jump"], flow, gru, bufs, ent["h"])
            _backward_loop(ent["grad_h"], ent["dt"], ent["jump"], flow, gru, bufs, gbufs,
                           ent["grad_states"])
            with torch.cuda.graph(fwd, stream=stream):
                _forward_loop(ent["xe"], ent["dt"], ent["jump"], flow, gru, bufs, ent["h"])
            with torch.cuda.graph(bwd, stream=stream):
                _backward_loop(ent["grad_h"], ent["dt"], ent["jump"], flow, gru, bufs, gbufs,
                               ent["grad_states"])
        torch.cuda.current_stream(xe.device).wait_stream(stream)
        ent["fwd"], ent["bwd"] = fwd, bwd
        self.entries[key] = ent
        return ent


_GRAPHS = ScanGraphs()


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xe, dt, jump, n_flow, use_graphs, with_states, *params):  # noqa: D417
        flow = [(params[2 * i], params[2 * i + 1]) for i in range(n_flow)]
        gru = GRUParams(*params[2 * n_flow:])
        store = any(ctx.needs_input_grad)
        ent = None
        if use_graphs and store and not _GRAPHS.broken:
            try:
                ent = _GRAPHS.entry(xe, dt, jump, flow, gru, states=with_states)
            except RuntimeError as err:  # capture refused (driver, memory): run eagerly
                _GRAPHS.broken = True
                warnings.warn(f"CUDA graph capture of the ODE-RNN scan failed ({err}); running "
                              "it without graphs.", RuntimeWarning, stacklevel=2)
        states = None
        if ent is not None:
            ent["xe"].copy_(xe)
            ent["dt"].copy_(dt)
            ent["jump"].copy_(jump)
            ent["fwd"].replay()
            ent["owner"] = weakref.ref(ctx)
            h = ent["h"].clone()
            if with_states:
                states = ent["bufs"]["h"][1:].clone()
        else:
            hid = gru.w_co.shape[0]
            h = torch.empty(xe.shape[1], hid, dtype=xe.dtype, device=xe.device)
            bufs = gbufs = None
            if store:
                bufs, gbufs = _alloc(xe.shape[0], xe.shape[1], flow, gru, xe)
            elif with_states:
                states = torch.empty(xe.shape[0], xe.shape[1], hid, dtype=xe.dtype,
                                     device=xe.device)
            _forward_loop(xe, dt, jump, flow, gru, bufs, h, states)
            if with_states and bufs is not None:
                states = bufs["h"][1:].clone()
            ent = {"bufs": bufs, "gbufs": gbufs, "dt": dt, "jump": jump, "graphed": False}
        ctx.entry = ent
        ctx.n_flow = n_flow
        ctx.params = params
        ctx.with_states = with_states
        if with_states:
            return h, states
        return h

    @staticmethod
    def backward(ctx, grad_h, grad_states=None):  # noqa: D417
        ent = ctx.entry
        params = ctx.params
        flow = [(params[2 * i], params[2 * i + 1]) for i in range(ctx.n_flow)]
        gru = GRUParams(*params[2 * ctx.n_flow:])
        if not ctx.with_states:
            grad_states = None
        if ent.get("graphed", True):
            ent["grad_h"].copy_(grad_h)
            if ent["grad_states"] is not None:
                ent["grad_states"].copy_(grad_states)
            ent["bwd"].replay()
        else:
            _backward_loop(grad_h, ent["dt"], ent["jump"], flow, gru, ent["bufs"], ent["gbufs"],
                           grad_states)
        gxe, grads_flow, grads_gru = _weight_grads(flow, ent["bufs"], ent["gbufs"])
        if ent.get("graphed", True):
            # free for the next forward pass (a second backward through the same graph, with
            # retain_graph=True, must come before it)
            ent["owner"] = None
        return (gxe, None, None, None, None, None, *grads_flow, *grads_gru)


def odernn_scan(
    xe: torch.Tensor,
    schedule: EventSchedule,
    flow: Sequence[tuple[torch.Tensor, torch.Tensor]],
    gru: GRUParams,
    *,
    cuda_graphs: bool | None = None,
    return_states: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Final hidden state of the ODE-RNN recurrence over an event grid (differentiable).

    Parameters
    ----------
    xe : torch.Tensor
        ``(L, B, 2 * units)`` projected jump inputs of each event (the GRU's ``[x_g, x_c]``; read
        only where ``schedule.jump``).
    schedule : EventSchedule
        From :func:`event_schedule`.
    flow : sequence of (weight, bias)
        Linear layers of the vector field ``f``: tanh after every layer but the last (an
        ``latentode.nn.mlp``). Empty: no flow (a plain GRU).
    gru : GRUParams
        Weights of the jump.
    cuda_graphs : bool, optional
        Replay captured CUDA graphs (default: on CUDA unless ``LATENTODE_CUDA_GRAPHS=0``).
    return_states : bool
        Also return the state after every event (e.g. to pool the states of the jumps,
        ``schedule.jump``, over a series); its gradient enters the backward sweep at each
        event, so that it reaches the inputs and weights as the final state's does.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        ``(B, hidden)`` state after the last event (the recurrence starts from 0); with
        ``return_states``, also ``(L, B, hidden)``, the state after each event (the last one is
        the final state). Gradients flow to ``xe`` and to every weight; not to the times.
    """
    if cuda_graphs is None:
        cuda_graphs = ScanGraphs.enabled(xe.device)
    params = [p for pair in flow for p in pair] + list(gru)
    return _Scan.apply(xe, schedule.dt.to(xe.dtype), schedule.jump, len(flow),
                       bool(cuda_graphs), bool(return_states), *params)
