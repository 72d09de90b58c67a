"""The integration loop: a batch of series, each with its own times and its own step sizes.

Times here are *normalised*: every series runs forwards (``s`` increasing) from ``s_out[:, 0]`` to
``s_out[:, -1]``; the public API maps decreasing times and padding onto this. Two ways of reaching
the requested times:

* dense (``dense=True``, adaptive forward solves): steps are never shortened to hit a requested
  time; each requested time records which accepted step covers it and where; the steps' dense
  output polynomials are evaluated for all requested times in one batched operation at the end.
* stop (``dense=False``): each step is clipped to land exactly on the next requested time of its
  series (fixed-step methods, and the adjoint's backward solve whose state jumps there).

Series that are finished keep taking zero-length steps until the whole batch is done, so the loop
runs without a Python loop over series; the "all done?" test and the guards are read back from the
device every ``check_every`` iterations only (every iteration on the CPU, where it is free).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .controller import IController, error_ratio, initial_step
from .errors import ODESolveError
from .stepper import DenseOutput, System, rk_step
from .tableau import ButcherTableau

JumpFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolverConfig:
    """Options of one solve (already validated)."""

    tableau: ButcherTableau
    rtol: float
    atol: float
    step_size: float | None
    max_steps: int
    check_every: int = 1
    max_nonfinite: int = 8


def next_time(s: torch.Tensor, s_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each series' next requested time after ``s`` (its last one when none is left), where a
    stop-mode step must land: ``(index into s_out's row, time)``."""
    nxt = (s_out <= s.unsqueeze(1)).sum(1).clamp(max=s_out.shape[1] - 1)
    return nxt, s_out.gather(1, nxt.unsqueeze(1)).squeeze(1)


def clip_step(s: torch.Tensor, h: torch.Tensor, target: torch.Tensor, done: torch.Tensor,
              zero_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A step of size ``h`` from ``s``, shortened to land on ``target``: ``(clipped, h_eff,
    s_new)``, whether it was shortened, the step taken (0 for finished series) and where it
    ends (exactly ``target`` when shortened)."""
    remaining = target - s
    clipped = h >= remaining
    h_eff = torch.where(done, zero_h, torch.minimum(h, remaining))
    s_new = torch.where(clipped, target, s + h_eff)
    return clipped, h_eff, torch.where(done, s, s_new)


def integrate(
    system: System,
    y0: torch.Tensor,
    s_out: torch.Tensor,
    cfg: SolverConfig,
    *,
    dense: bool,
    record: bool = True,
    jump: JumpFn | None = None,
    time_of: Callable[[int, float], float] | None = None,
    cuda_graph: bool = False,
) -> torch.Tensor:
    """Integrate ``dy/ds = system(s, y)`` for every series from ``s_out[:, 0]`` to ``s_out[:, -1]``.

    Parameters
    ----------
    system : callable
        ``system(s, y)``; may define ``start_step(h)`` and ``end_step(accept, done)`` hooks,
        called around every step with the step sizes ``h`` (``None`` for evaluations outside a
        step) and the per-series acceptance.
    y0 : torch.Tensor
        ``(B, D)`` initial states.
    s_out : torch.Tensor
        ``(B, N)`` non-decreasing requested times per series.
    cfg : SolverConfig
        Method and tolerances.
    dense : bool
        Dense output (no clipping to requested times) or stop at every requested time.
    record : bool
        Whether to return the states at ``s_out`` (else the final states).
    jump : callable, optional
        ``jump(y, hit, index) -> y`` applied after every step; ``hit`` ``(B,)`` is True for the
        series whose accepted step landed on a requested time, and ``index`` ``(B,)`` is the
        first position of that time in ``s_out`` (equal requested times arrive together, as one
        run starting there); stop mode only.
    time_of : callable, optional
        ``time_of(series, s) -> t`` to report user times in errors.
    cuda_graph : bool
        On CUDA and without ``record``: run the first iteration eagerly, capture the next as a
        CUDA graph and replay it for every later iteration (one launch per step instead of a few
        hundred). The iteration must be a pure tensor program with fixed shapes: ``system`` and
        ``jump`` may keep state only in tensors updated in place. Falls back to eager iterations
        (with one warning) if capture fails.

    Returns
    -------
    torch.Tensor
        ``(B, N, D)`` states at ``s_out`` when ``record`` else ``(B, D)`` final states.
    """
    tab = cfg.tableau
    batch, n_out = s_out.shape
    s = s_out[:, 0].clone()
    s_end = s_out[:, -1]
    y = y0
    done = s >= s_end
    out = None
    step_of = theta_of = None
    if record and not dense:
        # states at the requested times: the state after the step that arrived there (step 0:
        # y0, for times equal to the start), gathered once at the end
        states = [y0]
        step_of = torch.zeros(batch, n_out, dtype=torch.long, device=s_out.device)
    if record and dense:
        # step 0 is the constant polynomial y0 (requested times equal to the start)
        zeros = torch.zeros_like(y0)
        coef_steps = [torch.stack([zeros, zeros, zeros, zeros, y0])]
        step_of = torch.zeros(batch, n_out, dtype=torch.long, device=s_out.device)
        theta_of = torch.zeros_like(s_out)
    controller = IController(order=tab.order) if tab.adaptive else None
    start_step = getattr(system, "start_step", None)
    end_step = getattr(system, "end_step", None)
    tiny = 4 * torch.finfo(y0.dtype).eps
    one = torch.ones((), dtype=s.dtype, device=s.device)

    k1 = None
    if tab.adaptive:
        if start_step is not None:
            start_step(None)
        with torch.no_grad():
            f0 = system(s, y0.detach())
            h = initial_step(system, s, y0.detach(), f0, tab.order, cfg.rtol, cfg.atol)
        h = torch.where(done, one, torch.minimum(h, s_end - s)).detach()
        if dense and tab.fsal and jump is None:
            k1 = system(s, y0)  # with grad when backpropagating through the solver
    else:
        step = float("inf") if cfg.step_size is None else cfg.step_size
        h = torch.full_like(s, step)
    n_steps = torch.zeros(batch, dtype=torch.long, device=s.device)
    nonfinite = torch.zeros_like(n_steps)
    underflow = torch.zeros_like(done)
    # constants of every iteration, made once (read, never written)
    zero_h, zero_count, all_true = torch.zeros_like(h), torch.zeros_like(n_steps), ~underflow

    def body(state: list) -> list:
        """One iteration: a step of every series (finished ones take zero-length steps)."""
        nonlocal step_of, theta_of
        s, y, h, done, n_steps, nonfinite, underflow, k1 = state
        ratio = None

        # target of this step: the end (dense) or the next requested time (stop)
        if dense:
            target = s_end
        else:
            nxt, target = next_time(s, s_out)
        clipped, h_eff, s_new = clip_step(s, h, target, done, zero_h)

        if start_step is not None:
            start_step(h_eff)
        y_new, err, ks = rk_step(system, tab, s, y, h_eff, k1)

        if tab.adaptive:
            ratio = error_ratio(err.detach(), y.detach(), y_new.detach(), cfg.rtol, cfg.atol)
            accept = (ratio <= 1.0) | done
            bad = ~torch.isfinite(ratio) & ~done
            nonfinite = torch.where(bad, nonfinite + 1, zero_count)
        else:
            accept = all_true
            bad = ~torch.isfinite(y_new.detach()).all(-1) & ~done
            nonfinite = torch.where(bad, nonfinite + cfg.max_nonfinite + 1, nonfinite)

        if end_step is not None:
            end_step(accept, done)

        acc = accept & ~done if tab.adaptive else ~done
        if record and dense:
            arrived = (s_out > s.unsqueeze(1)) & (s_out <= s_new.unsqueeze(1)) & acc.unsqueeze(1)
            f1 = ks[-1] if tab.fsal else system(s_new, y_new)
            coef_steps.append(DenseOutput(tab, y, y_new, ks, f1, h_eff).stacked())
            h_safe = torch.where(h_eff > 0, h_eff, torch.ones_like(h_eff))
            theta = ((s_out - s.unsqueeze(1)) / h_safe.unsqueeze(1)).clamp(0.0, 1.0)
            step_of = torch.where(arrived, len(coef_steps) - 1, step_of)
            theta_of = torch.where(arrived, theta, theta_of)
        elif record or jump is not None:
            # stop mode: a step never passes a requested time, so an accepted step that was
            # clipped arrived at exactly one run of equal times, starting at ``nxt``
            hit = acc & clipped
            if record:
                arrived = (s_out == target.unsqueeze(1)) & hit.unsqueeze(1)
                states.append(y_new)
                step_of = torch.where(arrived, len(states) - 1, step_of)
            if jump is not None:
                y_new = jump(y_new, hit, nxt)

        if tab.adaptive:
            accept_c = accept.unsqueeze(-1)
            y = torch.where(accept_c, y_new, y)
            if k1 is not None:
                k1 = torch.where(accept_c, ks[-1], k1)
            s = torch.where(accept, s_new, s)
        else:
            # a fixed step is always accepted: the selections above would copy y_new and s_new.
            # The state is taken through a view of y_new instead: like the selection, it sums
            # the gradients of the next step's uses of the state before they join y_new's
            # other uses (the same sums in the same order, so the same gradients to the bit)
            y, s = y_new.view_as(y_new), s_new
        n_steps = n_steps + (~done).long()

        if controller is not None:
            h_next = controller.update(h_eff, ratio, accept)
            # a step shortened to land on a requested time says little about the next one
            h_next = torch.where(accept & clipped, torch.maximum(h_next, h), h_next)
            h = torch.where(done, h, h_next)
            scale = torch.maximum(s.abs(), one)
            underflow = ~done & ~accept & (h < tiny * scale)
        done = s >= s_end
        return [s, y, h, done, n_steps, nonfinite, underflow, k1]

    state = [s, y0, h, done, n_steps, nonfinite, underflow, k1]
    graph = None
    use_graph = cuda_graph and not record and s.device.type == "cuda" and not _GRAPH_BROKEN[0]
    it = 0
    while True:
        s, done, n_steps, nonfinite, underflow = (state[0], state[3], state[4], state[5],
                                                    state[6])
        if it % cfg.check_every == 0:
            flags = torch.stack(
                [
                    done.all(),
                    (n_steps > cfg.max_steps).any(),
                    underflow.any(),
                    (nonfinite > cfg.max_nonfinite).any(),
                ]
            ).tolist()
            if flags[0]:
                break
            if any(flags[1:]):
                _raise(flags, n_steps > cfg.max_steps, underflow, nonfinite > cfg.max_nonfinite,
                       s, cfg, time_of)
        it += 1
        if graph is not None:
            graph.replay()
        elif use_graph and not _GRAPH_BROKEN[0]:
            state, graph = _capture(body, state)
        else:
            state = body(state)
    s, y = state[0], state[1]

    if record and not dense:
        stacked = torch.stack(states, 1)  # (B, steps + 1, D)
        out = stacked.gather(1, step_of.unsqueeze(-1).expand(-1, -1, stacked.shape[-1]))
    if record and dense:
        out = DenseOutput.evaluate_at(torch.stack(coef_steps), step_of, theta_of)
    return out if record else y


_GRAPH_BROKEN = [False]


def cuda_graphs_allowed() -> bool:
    """Whether CUDA-graph replay may be used (``LATENTODE_CUDA_GRAPHS=0`` turns it off)."""
    return os.environ.get("LATENTODE_CUDA_GRAPHS", "1") != "0"


def _capture(body: Callable[[list], list], state: list) -> tuple[list, torch.cuda.CUDAGraph]:
    """Run one iteration eagerly into static buffers, then capture the next one reading them.

    Returns the static state (updated in place by every replay) and the graph. The capture
    itself executes nothing, so the iteration count stays right.
    """
    dev = state[0].device
    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        new = body(state)  # the warm-up is a real iteration
        static = [None if t is None else t.clone() for t in new]
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            out = body(static)
            for dst, src in zip(static, out):
                if dst is not None:
                    dst.copy_(src)
    except RuntimeError as err:
        _GRAPH_BROKEN[0] = True
        warnings.warn(f"CUDA graph capture of the solver loop failed ({err}); running it "
                      "without graphs.", RuntimeWarning, stacklevel=3)
        torch.cuda.current_stream(dev).wait_stream(side)
        return static, None
    torch.cuda.current_stream(dev).wait_stream(side)
    return static, graph


def _raise(flags, too_many, underflow, nonfinite, s, cfg, time_of) -> None:
    if flags[3]:
        mask, reason = nonfinite, "non_finite"
    elif flags[2]:
        mask, reason = underflow, "step_underflow"
    else:
        mask, reason = too_many, "max_steps"
    b = int(mask.nonzero()[0, 0])
    s_b = float(s[b])
    t_b = time_of(b, s_b) if time_of is not None else s_b
    what = {
        "non_finite": "NaN/inf in the state or its derivative",
        "step_underflow": "the step size underflowed (the problem may be stiff or blow up)",
        "max_steps": f"max_steps={cfg.max_steps} steps were exhausted",
    }[reason]
    raise ODESolveError(
        f"ODE solve failed for series {b} at time {t_b:.6g}: {what}.",
        series=b,
        time=t_b,
        reason=reason,
    )
