"""Every script under benchmarks/ (and benchmarks/diagnostics/) answers ``--help`` and exits 0,
without running anything; and ``benchmarks/ode_solver.py --max-run`` stops a run on time.

Before: four diagnostics scripts ran the whole diagnostic (``calibration_pool_makeup.py``,
``messy_tiny_scale.py``) or failed (``ddp_split_readout.py``: ``KeyError: 'VARIANT'``;
``forecast_sparse_curves.py``: ``ValueError: invalid literal for int()``), and
``ode_solver.py --quick --repeats 1 --budget 2`` ran past 300 s in torchdiffeq's warm-up.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(p for p in [*BENCH.glob("*.py"), *BENCH.glob("diagnostics/*.py")]
                 if not p.name.startswith("_"))  # _cli.py, _rnn_baseline.py: modules


def test_the_scripts_are_found() -> None:
    names = {p.relative_to(BENCH).as_posix() for p in SCRIPTS}
    assert {"ode_solver.py", "physionet.py", "diagnostics/ddp_split_readout.py",
            "diagnostics/forecast_sparse_curves.py"} <= names
    assert len(SCRIPTS) >= 19


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(BENCH).as_posix())
def test_help(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1", "FSPARSE_OUT": str(tmp_path / "fsparse")}
    env.pop("VARIANT", None)
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, timeout=180, check=False, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:"), proc.stdout[:500]
    assert not (tmp_path / "fsparse").exists()  # --help writes nothing


@pytest.fixture(scope="module")
def ode_solver():
    spec = importlib.util.spec_from_file_location("ode_solver_bench", BENCH / "ode_solver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ode_solver_max_run_stops_a_run_forward_and_backward(ode_solver) -> None:
    torch = pytest.importorskip("torch")
    f, z0, _, t = ode_solver.make_problem(torch.device("cpu"), torch.float32)
    params = list(f.parameters())
    run = ode_solver.ours("backprop")
    # no limit: the measurement as before (the solve's evaluations, one run under a 0 s budget)
    _, n, nfe_fwd, nfe_bwd, _, _ = ode_solver.measure(run, f, z0, t, params, 3, 0.0)
    assert (n, nfe_bwd) == (1, 0) and nfe_fwd > 6
    limited = ode_solver.measure(run, f, z0, t, params, 3, 0.0, max_run_s=600.0)
    assert limited[1:4] == (1, nfe_fwd, 0)  # a limit not reached changes nothing
    with pytest.raises(ode_solver.OverTime, match="abandoned after 1 function evaluations"):
        ode_solver.measure(ode_solver.ours("adjoint"), f, z0, t, params, 3, 0.0,
                           max_run_s=1e-9)
    assert f.deadline is None  # cleared for the next mode
    # a run past its deadline in the backward pass (backprop: no evaluation there) stops
    z = z0.clone().requires_grad_(True)
    out = run(f, z, t).pow(2).sum()
    f.deadline = time.perf_counter() - 1.0
    ode_solver.guard_backward(out, f.check)
    try:
        with pytest.raises(ode_solver.OverTime):
            torch.autograd.grad(out, [z, *params])
    finally:
        f.deadline = None
