"""``benchmarks/classifier_small.py``: a one-epoch run of the oscillator task fits both
classifier kinds with the settings given and reports finite scores per seed."""

from __future__ import annotations

from pathlib import Path

import torch
from _settings import load_script

from latentode.utils import torch_threads

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "classifier_small.py"


def test_oscillator_task_one_epoch(capsys) -> None:
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        rows = load_script(BENCH).main(["--task", "oscillators", "--param", "max_epochs=1",
                                        "--param", "head_inputs=latent+summary+pooled"])
    assert [(r["classifier"], r["seed"]) for r in rows] == [
        ("latent", 0), ("latent", 1), ("encoder", 0), ("encoder", 1)]
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["auc_roc"] <= 1.0
    out = capsys.readouterr().out
    assert "settings: {'max_epochs': 1, 'head_inputs': 'latent+summary+pooled'}" in out
