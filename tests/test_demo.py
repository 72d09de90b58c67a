"""``make demo`` (``python -m latentode.demo``) runs end to end: scores and a plot."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("matplotlib")

from latentode import demo  # noqa: E402


def test_demo_runs_and_writes_plot(tmp_path, capsys):
    out = tmp_path / "sub" / "forecast.png"
    scores = demo.main(["--epochs", "1", "--out", str(out), "--verbose", "0"])
    assert set(scores) == {"interpolation", "extrapolation"}
    assert set(scores["interpolation"]) == {"Latent ODE", "linear interpolation",
                                            "last value carried forward"}
    assert set(scores["extrapolation"]) == {"Latent ODE", "last value carried forward",
                                            "first-day mean"}
    for task in scores.values():
        assert all(math.isfinite(v) and v > 0 for v in task.values())
    assert out.stat().st_size > 10_000  # a PNG with five panels, not an empty file
    printed = capsys.readouterr().out
    assert "interpolation MSE" in printed and str(out) in printed
