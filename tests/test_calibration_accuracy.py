"""Interval calibration on held-out synthetic series (slow; issue #4's targets).

Runs ``benchmarks/calibration.py`` (damped oscillators, noise std 0.1, 200 series of which 50
are held out, 80 epochs, about 2 minutes on one CPU thread) and checks the empirical coverage
of the central 50 % and 90 % predictive intervals against the noisy held-out values: within 5
points of nominal for interpolation and 10 points for extrapolation. Measured: interpolation
54.6 / 91.0, extrapolation 59.9 / 95.7 (without calibration: 58.9 / 94.0 and 65.7 / 97.3); with
the neighbour readout and six calibration rounds 49.0 / 87.3 and 46.5 / 85.0; with the defaults
of 2026-11-30 (`calibration_structure="training"`, the predictive mean) 51.0 / 89.2 and 54.7 /
92.3.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _settings import load_script

from latentode.utils import torch_threads

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"


def _suite_within_targets(*names: str):
    """Run ``--suite NAMES --epochs 60``, assert every coverage is within the benchmark's
    tolerance of nominal and return the table."""
    bench = load_script(BENCH)
    with torch_threads(torch.get_num_threads()):  # the benchmark sets 1 thread
        table = bench.main(["--suite", *names, "--epochs", "60"])
    for name in names:
        for task, tol in bench.TOLERANCE.items():
            for level in (50, 90):
                cov = table.loc[name, f"{task} {level}"]
                assert abs(cov - level) <= tol, (name, task, level, cov)
    return table


@pytest.mark.timeout(1200)
def test_interval_coverage_within_targets():
    bench = load_script(BENCH)
    with torch_threads(torch.get_num_threads()):  # the benchmark sets 1 thread
        table = bench.main(["--epochs", "80"])
    for task, tol in (("interpolation", 5.0), ("extrapolation", 10.0)):
        for level in (50, 90):
            cov = table.loc[task, f"cov{level}"]
            assert abs(cov - level) <= tol, (task, level, cov)
    assert (table["CRPS"] < 2.5 * table["oracle CRPS"]).all(), table


@pytest.mark.timeout(1200)
def test_intervals_hold_on_stochastic_processes_the_calibration_was_not_developed_on():
    """``benchmarks/calibration.py --suite ou walk --epochs 60`` (about 2.5 minutes on one
    thread): on Ornstein-Uhlenbeck and random-walk paths, whose forecast error grows with the
    horizon, the calibrated 50 % / 90 % intervals are within 5 points of nominal for
    interpolation and 10 for extrapolation. Measured (six calibration rounds): ou 52.5 / 91.1
    and 43.8 / 86.5, walk 54.1 / 92.3 and 47.8 / 82.5 (one factor per channel: extrapolation
    19.9 / 43.3 and 22.3 / 43.5); with the defaults of 2026-11-30: ou 51.8 / 91.4 and 42.9 /
    85.2, walk 53.2 / 91.0 and 52.2 / 86.6 (one factor per channel: 19.2 / 42.0, 19.5 /
    40.4)."""
    table = _suite_within_targets("ou", "walk")
    for name in ("ou", "walk"):
        # the gap factors are what holds the forecasts: without calibration they are too narrow
        assert table.loc[name, "extrap 90 raw"] < 80.0, table


@pytest.mark.timeout(1200)
def test_intervals_hold_where_one_shape_did_not():
    """``benchmarks/calibration.py --suite osc-sparse physionet --epochs 60`` (about 2 minutes):
    the two data sets whose interpolation intervals missed before calibration hid values as
    users do and fitted tails (osc-sparse 58.2 / 94.2: too wide, the validation rounds hid the
    first observation that the test keeps; PhysioNet 51.2 / 84.6: heavier tails than the
    Gaussian). Measured (six calibration rounds): osc-sparse 50.6 / 88.9 and 50.4 / 90.2,
    PhysioNet 50.8 / 90.3 and 49.5 / 88.6, with Student-t tails on the PhysioNet channels'
    held-out values (one factor per channel: 53.2 / 85.1); with the defaults of 2026-11-30:
    osc-sparse 54.9 / 91.9 and 54.3 / 90.9, PhysioNet 50.1 / 89.6 and 49.0 / 88.1."""
    _suite_within_targets("osc-sparse", "physionet")
