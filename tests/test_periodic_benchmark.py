"""``benchmarks/periodic.py``: a tiny run prints the table and scores every method on the same
hidden points."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from _settings import load_script

from latentode.utils import torch_threads

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "periodic.py"


def _bench():
    return load_script(BENCH)


def test_tiny_periodic_run(capsys, tmp_path) -> None:
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = _bench().main(["--n-series", "40", "--n-train", "30", "--n-points", "20",
                             "--epochs", "2", "--param", "latent_dim=3", "--param", "rec_dim=6",
                             "--param", "units=8", "--param", "n_layers=1", "--param",
                             "gru_units=8", "--param", "linear_term=True", "--out",
                             str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "| held-out MSE (50 % hidden) |" in out and "linear_term" in out
    held = res["held_out"]
    assert set(held) == {"model", "linear", "LOCF", "mean"}
    assert all(math.isfinite(v) and v >= 0 for v in held.values())
    # sinusoids sampled 20 times over 2 to 4 periods: interpolating beats the series' mean
    assert held["linear"] < held["mean"]
    assert res["epochs"] == 2 and res["params"]["linear_term"] is True
    assert (tmp_path / "r.json").exists()


def test_point_rules_score_one_fit(capsys) -> None:
    with torch_threads(torch.get_num_threads()):
        res = _bench().main(["--n-series", "40", "--n-train", "30", "--n-points", "20",
                             "--epochs", "1", "--param", "latent_dim=3", "--param", "rec_dim=6",
                             "--param", "units=8", "--param", "n_layers=1", "--param",
                             "gru_units=8", "--point-rules", "posterior_mean",
                             "predictive_mean"])
    out = capsys.readouterr().out
    rules = res["point_rules"]
    assert list(rules) == ["posterior_mean", "predictive_mean"]
    assert res["held_out"]["model"] == rules["posterior_mean"]["held_out"]
    assert res["reconstruction"] == rules["posterior_mean"]["reconstruction"]
    assert rules["predictive_mean"]["held_out"] != rules["posterior_mean"]["held_out"]
    assert "| predictive_mean |" in out and "| posterior_mean |" in out
