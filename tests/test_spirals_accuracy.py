"""Slow: the default estimator learns the Neural ODE paper's spirals beyond a naive forecast.

Measured (README "Spirals"): defaults with ``latent_dim=4``, 150 epochs, 30 of 100 points
observed: extrapolation RMSE 1.171 over the next 100 steps against LOCF's 2.286 (the paper:
0.1642). The bound below keeps what the library reaches today; tighten it as it improves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_spirals_extrapolation_beats_locf_by_a_margin() -> None:
    torch = pytest.importorskip("torch")
    import spirals  # benchmarks/spirals.py

    before = torch.get_num_threads()
    try:
        (res,) = spirals.main(["--observed", "30", "--epochs", "150", "--param", "latent_dim=4",
                               "--param", "early_stopping=False"])
    finally:
        torch.set_num_threads(before)
    assert res["locf"] == pytest.approx(2.286, abs=0.01)
    assert res["rmse"] < 1.35  # measured 1.171
    assert res["rmse_covered"] < 1.1  # measured 0.932
