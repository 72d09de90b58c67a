"""``benchmarks/train_speed.py``: a tiny in-process run, with ``--profile``.

Uses the bundled 300-stay sample (the ``--data`` path does not exist) and one epoch of 20
stays, so it runs in seconds. Timings are printed, never asserted.
"""

from __future__ import annotations

import pytest
import torch
from _settings import BENCHMARKS, load_script

from latentode.utils import torch_threads


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCHMARKS / "train_speed.py")


def test_profile_reports_per_batch_counts_and_writes_the_tables(bench, tmp_path, capsys):
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        results = bench.main([
            "--data", str(tmp_path / "no-archive-here"), "--n-stays", "20", "--batch-size", "10",
            "--epochs", "1", "--modes", "backprop", "--device", "cpu", "--in-process",
            "--profile", "1", "--profile-out", str(tmp_path / "prof.txt"),
        ])
    out = capsys.readouterr().out
    (res,) = results
    assert res["epochs"] == 1 and res["n_stays"] == 20 and res["mode"] == "backprop"
    prof = res["profile"]
    assert prof["batches"] == 1 and prof["wall_s_per_batch"] > 0
    # on the CPU nothing is launched on a GPU or copied to the host
    assert prof["per_batch"] == {"kernel launches": 0, "graph replays": 0, "memcpy calls": 0,
                                 "synchronisations": 0}
    assert "aten::" in prof["top"]  # the operator table
    written = (tmp_path / "prof_backprop_cpu.txt").read_text()
    assert written.startswith("backprop on cpu, 1 batches of 10") and "by count:" in written
    assert "profile cpu backprop (1 batches" in out
