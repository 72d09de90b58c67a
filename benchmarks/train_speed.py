"""Training speed and memory of the Latent ODE on a PhysioNet-sized stream (issue #3).

Times one (or more) training epochs of :class:`latentode.LatentODERegressor` with the paper's
PhysioNet model size (latent 20, recognition 40, dynamics MLP 3 x 50, GRU 50, ODE-RNN encoder,
batch 50, dopri5 rtol 1e-3 / atol 1e-4, 3 trajectory samples) for ``gradient="adjoint"`` and
``gradient="backprop"``.

Data: the first ``--n-stays`` PhysioNet 2012 stays (set-a + set-b) from the archive, quantised to
0.016 h and scaled as in the paper. Without the archive, the 300 stays bundled with latentode are
replicated (under new ids) until ``--n-stays`` is reached.

What is measured (each mode runs in its own subprocess, so memory figures do not mix):

* ``s/epoch``: the training loop's own per-epoch wall time (``est.history_["seconds"]``: batches,
  forward, backward, optimiser step; no validation because ``validation_fraction=0``). The fit
  goes through the public estimator (``max_epochs=--epochs``, ``early_stopping=False``,
  ``verbose=0``); ``fit total`` is the whole ``fit`` call and ``prep`` = ``fit total`` minus the
  epochs (validation of the frame, padding, model construction).
* ``peak MB``: CPU: growth of the peak resident set (``VmHWM`` of ``/proc/self/status``, reset
  through ``/proc/self/clear_refs`` after the data are loaded) over the resident set before
  ``fit``. CUDA: ``torch.cuda.max_memory_allocated``.
* ``NFE/batch``: calls of the latent dynamics network per training batch (forward solve plus,
  for the adjoint, the backward solve), counted with a global module forward hook and, for
  the adjoint's hand-written VJP, per call; ``enc. f/batch``: events of the ODE-RNN encoder's
  fused scan (one Euler step of its hidden-state dynamics each). On CUDA, iterations replayed
  from a captured graph are not counted: there the adjoint's figure covers only the forward
  solve and the first backward iterations.

Usage::

    python benchmarks/train_speed.py                       # 6400 stays, 1 epoch, both modes
    python benchmarks/train_speed.py --n-stays 640         # 1/10 of an epoch, x10 extrapolated
    python benchmarks/train_speed.py --device cuda --data /path/to/set-ab.tar.gz
    python benchmarks/train_speed.py --ddp 2               # also 2 processes with torchrun
    python benchmarks/train_speed.py --device cuda --profile 4 --profile-out prof.txt

``--profile K`` then trains one more epoch of ``K`` batches (``warm_start``, the weights of the
timed epochs) under :mod:`torch.profiler` and prints, per training batch, the kernel launches,
CUDA-graph replays, device-to-host copies and synchronisations, and the operators with the most
device (or CPU) time: where a step's time goes, for the next optimisation. ``--profile-out``
writes the full tables.

``--ddp N`` also trains each mode distributed over ``N`` processes (``python -m
torch.distributed.run --standalone --nproc_per_node=N``, one GPU each with CUDA, else ``N`` CPU
processes of ``--threads`` threads each; same global batch) and prints its s/epoch (rank 0's)
beside the single-process figure.

``--threads 1`` (default) pins torch to one intra-op thread: with batch 50 the matrices are tiny
and on a busy 2-core machine two threads were up to 35x slower per batch (spin-waiting);
``--threads 0`` keeps torch's default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "physionet2012"
QUANTIZATION = 0.016
PAPER_STAYS = 6400  # 80 % of 8,000 stays: one training epoch of the paper


def default_data_path() -> Path:
    """``<repo>/../shared/data/physionet2012`` (where CI and the shared machine keep it)."""
    return DEFAULT_DATA


def load_stays(n_stays: int, data: str | os.PathLike[str] | None) -> tuple[pd.DataFrame, str]:
    """The first ``n_stays`` PhysioNet stays, paper preprocessing; ``(frame, source)``.

    Stays with fewer than two observed time points (which the estimator rejects) are skipped.

    Falls back to the bundled 300-stay sample, replicated with new ids, when the archive is
    absent.
    """
    from latentode.datasets import load_physionet2012, load_physionet_sample

    path = Path(data) if data is not None else default_data_path()
    if path.exists():
        df = load_physionet2012(path, quantization=QUANTIZATION, scaling="paper",
                                n_stays=min(n_stays + 50, 8000))
        source = f"archive {path}"
    else:
        df = load_physionet_sample(quantization=QUANTIZATION, scaling="paper")
        source = "bundled 300-stay sample (archive not found)"
    # the estimator needs two observed time points per stay (8 of the first 6400 have one)
    df = df[df.groupby("id")["t"].transform("size") >= 2]
    base = df
    k = 1
    while df["id"].nunique() < n_stays:  # replicate under new ids
        extra = base.copy()
        extra["id"] = extra["id"] + k * 10_000_000
        df = pd.concat([df, extra], ignore_index=True)
        k += 1
    ids = np.sort(df["id"].unique())[:n_stays]
    if k > 1:
        source += f", replicated x{k}"
    return df[df["id"].isin(ids)].reset_index(drop=True), source


def _rss_kb(field: str) -> int:
    """A memory field (kB) of ``/proc/self/status``; 0 where unavailable."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    m = re.search(rf"{field}:\s+(\d+)", text)
    return int(m.group(1)) if m else 0


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_mode(args: argparse.Namespace, gradient: str) -> dict[str, Any]:
    """Fit ``--epochs`` epochs with one gradient mode in this process; return the figures."""
    import torch

    from latentode import LatentODERegressor
    from latentode.training import distributed as ddp
    from latentode.utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    ddp.init_from_env()  # under torchrun (--ddp): one model trained across the processes
    df, source = load_stays(args.n_stays, args.data)
    device = ddp.rank_device(resolve_device(args.device))
    est = LatentODERegressor(
        latent_dim=20, rec_dim=40, units=50, n_layers=3, gru_units=50, encoder=args.encoder,
        gradient=gradient, solver="dopri5", rtol=1e-3, atol=1e-4, n_traj_samples=3,
        max_epochs=args.epochs, batch_size=args.batch_size, lr=1e-2, kl_warmup=10,
        validation_fraction=0.0, early_stopping=False, device=device, random_state=args.seed,
        verbose=0, n_jobs=args.threads or -1,  # the estimator sets its own thread count
    )
    calls = {"latent": 0, "encoder": 0}

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        # LatentDynamics serves both the latent ODE (dim = latent_dim 20) and the ODE-RNN
        # encoder's hidden-state ODE (dim = rec_dim 40); tell them apart by their size
        if type(module).__name__ == "LatentDynamics":
            calls["latent" if getattr(module, "dim", None) == 20 else "encoder"] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    # the fused paths evaluate the networks without calling the modules: count them too
    import latentode.nn.encoder as enc_mod
    from latentode.ode import adjoint as adj_mod

    scan, call_mlp = enc_mod.odernn_scan, adj_mod._AdjointSystem._call_mlp

    def counting_scan(xe, *a, **k):
        calls["encoder"] += int(xe.shape[0])  # one flow evaluation per event
        return scan(xe, *a, **k)

    def counting_call(self, *a, **k):
        calls["latent"] += 1
        return call_mlp(self, *a, **k)

    enc_mod.odernn_scan = counting_scan
    adj_mod._AdjointSystem._call_mlp = counting_call
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    reset_ok = _reset_peak_rss()
    rss0 = _rss_kb("VmRSS")
    start = time.perf_counter()
    est.fit(df)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    handle.remove()
    enc_mod.odernn_scan, adj_mod._AdjointSystem._call_mlp = scan, call_mlp
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        mem_kind = "CUDA max allocated"
    else:
        peak_mb = (_rss_kb("VmHWM") - rss0) / 1024
        mem_kind = "RSS peak growth" if reset_ok else "RSS peak growth (VmHWM not reset)"
    seconds = [float(s) for s in est.history_["seconds"]]
    n_batches = -(-args.n_stays // args.batch_size) * len(seconds)
    profile = _profile(est, df, args, device, gradient) if args.profile else None
    return {
        "mode": gradient,
        "encoder": args.encoder,
        "n_stays": args.n_stays,
        "n_rows": len(df),
        "source": source,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "epochs": len(seconds),
        "s_per_epoch": float(np.mean(seconds)),
        "epoch_seconds": seconds,
        "fit_total_s": total,
        "prep_s": total - float(np.sum(seconds)),
        "peak_mb": peak_mb,
        "memory": mem_kind,
        "nfe_per_batch": calls["latent"] / max(n_batches, 1),
        "encoder_evals_per_batch": calls["encoder"] / max(n_batches, 1),
        "train_loss": est.history_["train_loss"][-1],
        "skipped_batches": int(np.sum(est.history_["n_skipped"])),
        "procs": ddp.get_world_size(),
        "rank": ddp.get_rank(),
        "profile": profile,
    }


#: runtime calls counted per training batch by ``--profile`` (CUDA runtime / driver API names)
PROFILE_CALLS = {
    "kernel launches": ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC",
                        "cuLaunchKernelEx"),
    "graph replays": ("cudaGraphLaunch", "cuGraphLaunch"),
    "memcpy calls": ("cudaMemcpyAsync", "cudaMemcpy"),
    "synchronisations": ("cudaStreamSynchronize", "cudaDeviceSynchronize",
                         "cudaEventSynchronize"),
}


def _profile(est: Any, df: pd.DataFrame, args: argparse.Namespace, device: Any,
             mode: str) -> dict[str, Any]:
    """One more epoch of ``--profile`` batches under :mod:`torch.profiler`; per-batch figures."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    n_batches = int(args.profile)
    ids = np.sort(df["id"].unique())[: n_batches * args.batch_size]
    sub = df[df["id"].isin(ids)]
    est.set_params(warm_start=True, max_epochs=1, calibrate=False)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        est.fit(sub)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    counts = {name: 0 for name in PROFILE_CALLS}
    for evt in averages:
        for name, keys in PROFILE_CALLS.items():
            if evt.key in keys:
                counts[name] += evt.count
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    top = averages.table(sort_by=sort_by, row_limit=30)
    by_count = averages.table(sort_by="count", row_limit=20)
    if args.profile_out:
        stem = Path(args.profile_out)
        out = stem.with_name(f"{stem.stem}_{mode}_{device.type}{stem.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            f"{mode} on {device}, {n_batches} batches of {args.batch_size}\n\n"
            f"by {sort_by}:\n{top}\n\nby count:\n{by_count}\n")
    return {
        "batches": n_batches,
        "wall_s_per_batch": wall / n_batches,
        "per_batch": {name: c / n_batches for name, c in counts.items()},
        "top": top,
    }


def _devices(spec: str) -> list[str]:
    """``"auto"``: the CPU, and CUDA beside it when present; else the comma-separated list."""
    import torch

    if spec == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [d.strip() for d in spec.split(",") if d.strip()]


def _steady(r: dict[str, Any]) -> float:
    """Mean s/epoch after the first epoch (which also pays warm-up and CUDA-graph capture)."""
    sec = r["epoch_seconds"]
    return float(np.mean(sec[1:])) if len(sec) > 1 else float(sec[0])


def _side_by_side(results: Sequence[dict[str, Any]], scale: float) -> str:
    """One row per mode, one column per device (steady s/epoch at the paper's epoch size)."""
    rows: dict[str, dict[str, str]] = {}
    for r in results:
        row = rows.setdefault(r["mode"], {"mode": r["mode"]})
        row[f"{r['device']} s/epoch @{PAPER_STAYS}"] = f"{_steady(r) * scale:.1f}"
    return "side by side (steady epochs):\n" + pd.DataFrame(list(rows.values())).to_string(
        index=False)


def _table(results: Sequence[dict[str, Any]], scale: float) -> str:
    rows = []
    for r in results:
        rows.append({
            "device": r["device"],
            "mode": r["mode"],
            "stays": r["n_stays"],
            "s/epoch (measured)": f"{r['s_per_epoch']:.1f}",
            "steady s/epoch": f"{_steady(r):.2f}",
            f"s/epoch @{PAPER_STAYS} stays": f"{r['s_per_epoch'] * scale:.0f}",
            "prep s": f"{r['prep_s']:.1f}",
            "peak MB": f"{r['peak_mb']:.0f}",
            "NFE/batch": f"{r['nfe_per_batch']:.0f}",
            "enc. f/batch": f"{r.get('encoder_evals_per_batch', float('nan')):.0f}",
            "train loss": f"{r['train_loss']:.3f}",
        })
    return pd.DataFrame(rows).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark (one subprocess per gradient mode); print and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help=f"PhysioNet archive or folder (default {DEFAULT_DATA})")
    parser.add_argument("--n-stays", type=int, default=PAPER_STAYS)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto",
                        help="a device or a comma-separated list, run side by side (default "
                        "'auto': 'cpu,cuda' when a GPU is present, else 'cpu')")
    parser.add_argument("--encoder", default="odernn", choices=("odernn", "gru"))
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--modes", nargs="+", default=["backprop", "adjoint"],
                        choices=("backprop", "adjoint"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1, fastest for this small model "
                        "on a shared CPU; 0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--in-process", action="store_true",
                        help="run the modes in this process (memory figures then mix)")
    parser.add_argument("--ddp", type=int, default=0, metavar="N",
                        help="also train each mode distributed over N processes (torchrun)")
    parser.add_argument("--profile", type=int, default=0, metavar="K",
                        help="also profile an epoch of K batches (torch.profiler)")
    parser.add_argument("--profile-out", default=None,
                        help="write the profiler's tables here (with --profile; the mode "
                        "and device are added to the name)")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        result = run_mode(args, args._child)
        if result["rank"] == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return []

    devices = _devices(args.device)
    results = []
    for device, mode in [(d, m) for d in devices for m in args.modes]:
        if args.in_process:
            args.device = device
            results.append(run_mode(args, mode))
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:]),
               "--device", device, "--_child", mode]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"mode {mode} failed (exit {proc.returncode})")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    ddp_results = [_run_ddp(argv, mode, args.ddp) for mode in args.modes] if args.ddp > 1 else []
    r0 = results[0]
    scale = PAPER_STAYS / r0["n_stays"]
    print(f"PhysioNet 2012, {r0['n_stays']} stays ({r0['n_rows']} rows; {r0['source']}), "
          f"encoder {r0['encoder']}, batch {args.batch_size}, devices {','.join(devices)} "
          f"({r0['threads']} torch threads), {r0['epochs']} epoch(s); memory = {r0['memory']}")
    print(_table(results, scale))
    if scale != 1:
        print(f"(s/epoch @{PAPER_STAYS} stays = measured x {scale:g}, linear extrapolation)")
    if len(results) == 2 and len(devices) == 1:
        ratio = results[1]["s_per_epoch"] / results[0]["s_per_epoch"]
        print(f"{results[1]['mode']} / {results[0]['mode']} time ratio: {ratio:.2f}")
    if len(devices) > 1:
        print(_side_by_side(results, scale))
    if ddp_results:
        print(_ddp_table(results, ddp_results, scale))
    for r in results:
        if r.get("profile"):
            p = r["profile"]
            per = ", ".join(f"{k} {v:.0f}" for k, v in p["per_batch"].items())
            print(f"\nprofile {r['device']} {r['mode']} ({p['batches']} batches, "
                  f"{p['wall_s_per_batch'] * 1e3:.0f} ms/batch under the profiler): per batch "
                  f"{per}\n{p['top']}")
    results = results + ddp_results
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


def _run_ddp(argv: Sequence[str] | None, mode: str, n_procs: int) -> dict[str, Any]:
    """Train ``mode`` over ``n_procs`` torchrun processes; rank 0's figures."""
    script = [str(Path(__file__).resolve()), *(argv or sys.argv[1:])]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n_procs}", *script, "--_child", mode]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"mode {mode} with --ddp {n_procs} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def _ddp_table(single: Sequence[dict[str, Any]], ddp: Sequence[dict[str, Any]],
               scale: float) -> str:
    """s/epoch of each mode on one process and distributed, and the speed-up."""
    rows = []
    for s, d in zip(single, ddp):
        rows.append({
            "mode": s["mode"],
            "processes": d["procs"],
            "devices": d["device"] if d["device"] == "cpu" else f"{d['procs']} x {d['device']}",
            f"s/epoch @{PAPER_STAYS}, 1 process": f"{s['s_per_epoch'] * scale:.1f}",
            f"s/epoch @{PAPER_STAYS}, {d['procs']} processes": f"{d['s_per_epoch'] * scale:.1f}",
            "speed-up": f"{s['s_per_epoch'] / d['s_per_epoch']:.2f}",
            "train loss 1 / N": f"{s['train_loss']:.4f} / {d['train_loss']:.4f}",
        })
    return "distributed (torchrun, same global batch):\n" + pd.DataFrame(rows).to_string(
        index=False)


if __name__ == "__main__":
    main()
