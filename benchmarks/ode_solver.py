"""Benchmark of latentode.ode against torchdiffeq and torchode (prints a table; not a test).

Problem (issue #2): batch 256, state dim 16, dynamics MLP 16-64-64-16 tanh, 50 sorted random times
per series in [0, 5], dopri5, rtol 1e-3, atol 1e-4; forward + backward of the sum of squares.
"shared": one time grid for all series; "per-series": each series its own 50 times (libraries
without per-series times solve on the union of all times, as the reference Latent ODE code does).

For every mode: median wall time of forward+backward over up to ``--repeats`` (5) runs after
one untimed warm-up run, function evaluations (NFE, batched calls) forward and backward, peak
memory (CUDA: max allocated; CPU: peak resident set growth, from /proc), and the gradient's
relative error against a float64 tight-tolerance reference (rtol 1e-9, our backprop mode, itself
checked against finite differences and scipy in tests/test_ode.py).

Time per mode: ``--budget S`` (60) caps the number of timed runs, ``min(repeats, S / warm-up
seconds)`` and at least one, so a mode takes about ``S`` seconds plus its warm-up, but a mode
slower than ``S`` still runs its warm-up and one timed run in full (torchdiffeq on the union of
the per-series times: minutes each on a CPU). ``--max-run S`` (off by default) caps every run,
the warm-up included: a run still going after ``S`` seconds is abandoned at the dynamics' next
evaluation or, in the backward pass, before the next node of the autograd graph runs (so within
one evaluation or one node of ``S``), and its row says so.

    python benchmarks/ode_solver.py          # all (torchdiffeq's union adjoint: minutes a run)
    python benchmarks/ode_solver.py --quick  # skip the multi-minute torchdiffeq union adjoint
    python benchmarks/ode_solver.py --quick --repeats 1 --budget 2 --max-run 10   # a short check
    python benchmarks/ode_solver.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from latentode.ode import odeint

B, D, HIDDEN, N, T_END = 256, 16, 64, 50, 5.0
RTOL, ATOL = 1e-3, 1e-4


class OverTime(Exception):
    """A run went past ``--max-run``: raised by the dynamics, forward or backward."""


class Dynamics(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN),
                                 nn.Tanh(), nn.Linear(HIDDEN, D))
        self.nfe = 0
        self.deadline: float | None = None  # perf_counter() time after which a run stops

    def forward(self, t, z):
        self.nfe += 1
        self.check()
        return self.net(z)

    def check(self, *_: object) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise OverTime(f"abandoned after {self.nfe} function evaluations")


def guard_backward(out: torch.Tensor, check: Callable) -> None:
    """Call ``check`` before every node of ``out``'s backward graph runs (autograd prehooks), so
    that a backward pass through a large graph (torchdiffeq's interpolation at the union of the
    per-series times: minutes on a CPU, with no evaluation of the dynamics until its end) stops
    on time too."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        node.register_prehook(check)
        stack.extend(n for n, _ in node.next_functions)


def make_problem(device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = Dynamics()
    with torch.no_grad():
        for p in f.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))
    f = f.to(device=device, dtype=dtype)
    z0 = torch.randn(B, D, generator=g).to(device=device, dtype=dtype)
    t_series = torch.sort(torch.rand(B, N, generator=g) * T_END, dim=1).values
    t_series[:, 0] = 0.0
    t_shared = torch.linspace(0, T_END, N)
    return f, z0, t_series.to(device=device, dtype=dtype), t_shared.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------ the modes
def ours(gradient, **kwargs):
    def run(f, z0, t):
        return odeint(f, z0, t, method="dopri5", rtol=RTOL, atol=ATOL, gradient=gradient,
                      **kwargs)
    return run


def torchdiffeq_mode(adjoint):
    import torchdiffeq

    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint

    def run(f, z0, t):
        if t.ndim == 1:
            return solve(f, z0, t, rtol=RTOL, atol=ATOL, method="dopri5").transpose(0, 1)
        union, inverse = torch.unique(t, sorted=True, return_inverse=True)  # union of all times
        ys = solve(f, z0, union, rtol=RTOL, atol=ATOL, method="dopri5")  # (U, B, D)
        idx = inverse.unsqueeze(-1).expand(-1, -1, D)
        return ys.transpose(0, 1).gather(1, idx)
    return run


def torchode_mode(kind):
    import torchode as to

    def run(f, z0, t):
        term = to.ODETerm(f)
        step = to.Dopri5(term=term)
        ctrl = to.IntegralController(atol=ATOL, rtol=RTOL, term=term)
        if kind == "AutoDiffAdjoint":
            solver = to.AutoDiffAdjoint(step, ctrl)
        elif kind == "BacksolveAdjoint":
            solver = to.BacksolveAdjoint(term, step, ctrl)
        else:
            solver = to.JointBacksolveAdjoint(term, step, ctrl)
        t_eval = t if t.ndim == 2 else t.unsqueeze(0).expand(z0.shape[0], -1)
        return solver.solve(to.InitialValueProblem(y0=z0, t_eval=t_eval)).ys
    return run


# ------------------------------------------------------------------------------------ measuring
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def measure(run: Callable, f, z0, t, params, repeats: int, budget_s: float,
            max_run_s: float | None = None):
    """Median seconds, runs, NFE forward / backward, peak bytes and the gradients of one mode;
    :class:`OverTime` when a run passes ``max_run_s`` (None: no limit)."""
    device = z0.device

    def once():
        f.nfe = 0
        f.deadline = None if max_run_s is None else time.perf_counter() + max_run_s
        try:
            z = z0.clone().requires_grad_(True)
            out = run(f, z, t)
            nfe_fwd = f.nfe
            if f.deadline is not None:
                guard_backward(out, f.check)
            grads = torch.autograd.grad(out.pow(2).sum(), [z, *params])
            if device.type == "cuda":
                torch.cuda.synchronize()
        finally:
            f.deadline = None
        return grads, nfe_fwd, f.nfe - nfe_fwd

    t0 = time.perf_counter()
    once()  # warm-up
    first = time.perf_counter() - t0
    n = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_peak()
        base = _rss_kb("VmRSS") * 1024
    for _ in range(n):
        t0 = time.perf_counter()
        grads, nfe_f, nfe_b = once()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kb("VmHWM") * 1024 - base
    return statistics.median(times), n, nfe_f, nfe_b, peak, grads


def rel_err(grads, ref) -> float:
    num = sum(float((g.double() - r).pow(2).sum()) for g, r in zip(grads, ref))
    den = sum(float(r.pow(2).sum()) for r in ref)
    return (num / den) ** 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto",
                    help="a device or a comma-separated list run one after the other and shown "
                    "side by side (default 'auto': 'cpu,cuda' when a GPU is present)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds of timed runs per mode: runs = min(repeats, budget / warm-up "
                    "seconds), at least one; the warm-up and that one run are not capped (see "
                    "--max-run) (default 60)")
    ap.add_argument("--max-run", type=float, default=None, metavar="SECONDS",
                    help="abandon a mode when one of its runs, the warm-up included, passes "
                    "SECONDS (checked at every evaluation of the dynamics and before every node "
                    "of the backward graph); default: no limit")
    ap.add_argument("--quick", action="store_true", help="skip torchdiffeq's union adjoint")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.max_run is not None and not args.max_run > 0:
        ap.error(f"--max-run must be a positive number of seconds, got {args.max_run:g}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    else:
        devices = [d.strip() for d in args.device.split(",") if d.strip()]
    by_device = {dev: run_device(torch.device(dev), args) for dev in devices}
    if len(by_device) > 1:
        print("\nSide by side, median s of forward + backward:")
        keys = list(dict.fromkeys(k for res in by_device.values() for k in res))
        head = f"| {'mode':34s} | times      | " + " | ".join(f"{d:>9s}" for d in by_device) + " |"
        print(head)
        print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
        for name, tname in keys:
            cells = " | ".join(f"{res[(name, tname)]:9.4f}" if (name, tname) in res else
                               f"{'-':>9s}" for res in by_device.values())
            print(f"| {name:34s} | {tname:10s} | {cells} |")


def run_device(device: torch.device, args: argparse.Namespace) -> dict:
    """Every mode on one device: print its table and ratios; return median seconds by mode."""
    modes: list[tuple[str, str, Callable, bool]] = [
        ("latentode backprop", "both", ours("backprop"), True),
        ("latentode adjoint", "both", ours("adjoint"), True),
        ("latentode adjoint, dopri5 backward", "both", ours("adjoint", adjoint_method="dopri5"),
         True),
    ]
    try:
        import torchdiffeq  # noqa: F401

        modes += [("torchdiffeq odeint", "both", torchdiffeq_mode(False), True),
                  ("torchdiffeq odeint_adjoint", "both", torchdiffeq_mode(True), not args.quick)]
    except ImportError:
        print("torchdiffeq not installed: skipped")
    try:
        import torchode  # noqa: F401

        modes += [("torchode AutoDiffAdjoint", "both", torchode_mode("AutoDiffAdjoint"), True),
                  ("torchode BacksolveAdjoint", "both", torchode_mode("BacksolveAdjoint"), True),
                  ("torchode JointBacksolveAdjoint", "shared", torchode_mode("Joint"), True)]
    except ImportError:
        print("torchode not installed: skipped")

    f32, z32, ts32, tsh32 = make_problem(device, torch.float32)
    f64, z64, ts64, tsh64 = make_problem(device, torch.float64)
    refs = {}
    for name, t in (("shared", tsh64), ("per-series", ts64)):
        z = z64.clone().requires_grad_(True)
        out = odeint(f64, z, t, rtol=1e-9, atol=1e-11, gradient="backprop")
        refs[name] = torch.autograd.grad(out.pow(2).sum(), [z, *f64.parameters()])

    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"B={B} D={D} hidden={HIDDEN} N={N} rtol={RTOL} atol={ATOL}")
    header = (f"| {'mode':34s} | times      | {'median s':>9s} | runs | {'NFE fwd':>7s} | "
              f"{'NFE bwd':>7s} | {'peak MB':>8s} | {'grad rel err':>12s} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    results = {}
    params = list(f32.parameters())
    for name, which, run, enabled in modes:
        for tname, t in (("shared", tsh32), ("per-series", ts32)):
            if which == "shared" and tname != "shared":
                print(f"| {name:34s} | {tname:10s} | {'refuses per-series times':>60s} |")
                continue
            if not enabled:
                print(f"| {name:34s} | {tname:10s} | {'skipped (--quick)':>60s} |")
                continue
            try:
                med, n, nf, nb, peak, grads = measure(run, f32, z32, t, params, args.repeats,
                                                      args.budget, args.max_run)
            except OverTime as exc:
                print(f"| {name:34s} | {tname:10s} | "
                      f"{f'over --max-run {args.max_run:g} s: {exc}':>60s} |", flush=True)
                continue
            except Exception as exc:  # a library refusing the problem is a result too
                print(f"| {name:34s} | {tname:10s} | failed: {type(exc).__name__}: {exc}"[:200])
                continue
            err = rel_err(grads, refs[tname])
            results[(name, tname)] = med
            print(f"| {name:34s} | {tname:10s} | {med:9.4f} | {n:4d} | {nf:7d} | {nb:7d} | "
                  f"{peak / 2**20:8.1f} | {err:12.2e} |", flush=True)

    def ratio(a, b):
        if a in results and b in results:
            return f"{results[b] / results[a]:.1f}x"
        return "n/a"

    print("\nRatios (other / ours; > 1 means ours is faster):")
    bp = ("latentode backprop", "per-series")
    adj = ("latentode adjoint", "per-series")
    print(f"  torchode AutoDiffAdjoint / our backprop (per-series): "
          f"{ratio(bp, ('torchode AutoDiffAdjoint', 'per-series'))} (target >= 0.83x)")
    print(f"  torchode BacksolveAdjoint / our adjoint (per-series): "
          f"{ratio(adj, ('torchode BacksolveAdjoint', 'per-series'))} (target >= 20x)")
    print(f"  torchdiffeq odeint_adjoint on the union / our adjoint (per-series): "
          f"{ratio(adj, ('torchdiffeq odeint_adjoint', 'per-series'))} (target >= 300x)")
    print(f"  torchdiffeq odeint_adjoint / our adjoint (shared): "
          f"{ratio(('latentode adjoint', 'shared'), ('torchdiffeq odeint_adjoint', 'shared'))} "
          f"(target >= 1x)")
    return results


if __name__ == "__main__":
    main()
