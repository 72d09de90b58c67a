"""Every script under benchmarks/ (and benchmarks/diagnostics/) answers ``--help`` and exits 0,
without running anything; and ``benchmarks/ode_solver.py --max-run`` stops a run on time.

Before: four diagnostics scripts ran the whole diagnostic (``calibration_pool_makeup.py``,
``messy_tiny_scale.py``) or failed (``ddp_split_readout.py``: ``KeyError: 'VARIANT'``;
``forecast_sparse_curves.py``: ``ValueError: invalid literal for int()``), and
``ode_solver.py --quick --repeats 1 --budget 2`` ran past 300 s in torchdiffeq's warm-up.
"""

from __future__ import annotations

import importlib.util
import json
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


#: run in one subprocess (torch is imported once, not once per script): each script as
#: ``__main__`` with ``--help``; prints one JSON line per script (exit code, stdout's start)
_DRIVER = """
import contextlib, io, json, runpy, sys
for path in sys.argv[1:]:
    out, code = io.StringIO(), None
    sys.argv = [path, "--help"]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:  # report, go on with the next script
        code = repr(exc)
    print(json.dumps({"path": path, "code": code, "out": out.getvalue()[:500]}))
"""


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    fsparse = tmp_path_factory.mktemp("help") / "fsparse"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1", "FSPARSE_OUT": str(fsparse)}
    env.pop("VARIANT", None)
    proc = subprocess.run([sys.executable, "-c", _DRIVER, *map(str, SCRIPTS)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not fsparse.exists()  # --help writes nothing
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["path"]: r for r in runs}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(BENCH).as_posix())
def test_help(script: Path, help_runs: dict[str, dict]) -> None:
    run = help_runs[str(script)]
    assert run["code"] in (0, None), run
    assert run["out"].startswith("usage:"), run["out"]


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
