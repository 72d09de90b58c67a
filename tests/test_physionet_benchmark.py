"""``benchmarks/physionet.py``: its baselines, its metric breakdown and a tiny end-to-end run.

The end-to-end run uses the bundled 300-stay sample (``--allow-sample`` with an absent archive
path), so it needs neither the shared archive nor more than a few seconds.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "physionet.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("physionet_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame() -> pd.DataFrame:
    """Two stays, two features; stay 1 has a gap in ``a`` and a single ``b``."""
    return pd.DataFrame({
        "id": [1, 1, 1, 2, 2],
        "t": [0.0, 1.0, 3.0, 0.0, 2.0],
        "a": [1.0, np.nan, 5.0, np.nan, 2.0],
        "b": [np.nan, 4.0, np.nan, np.nan, np.nan],
    })


def test_linear_and_locf_baselines(bench):
    df = _frame()
    before = df.copy()
    fallback = pd.Series({"a": 9.0, "b": 7.0})
    lin = bench.linear(df, ["a", "b"], fallback)
    # stay 1: a(1) = 1 + (5 - 1) / 3; b constant beyond its only value
    np.testing.assert_allclose(lin["a"], [1.0, 1.0 + 4.0 / 3.0, 5.0, 2.0, 2.0])
    np.testing.assert_allclose(lin["b"], [4.0, 4.0, 4.0, 7.0, 7.0])  # stay 2: no b -> fallback
    lo = bench.locf(df, ["a", "b"], fallback)
    np.testing.assert_allclose(lo["a"], [1.0, 1.0, 5.0, 2.0, 2.0])  # first value carried back
    np.testing.assert_allclose(lo["b"], [4.0, 4.0, 4.0, 7.0, 7.0])
    pd.testing.assert_frame_equal(df, before)


def test_hide_keeps_first_rows_and_the_input(bench):
    rng = np.random.default_rng(0)
    n = 4000
    df = pd.DataFrame({"id": np.repeat(np.arange(40), 100), "t": np.tile(np.arange(100.0), 40),
                       "a": rng.normal(size=n), "b": np.where(rng.random(n) < 0.5, 1.0, np.nan)})
    before = df.copy()
    cond, hidden = bench.hide(df, ["a", "b"], 0.5, seed=3)
    observed = df[["a", "b"]].notna().to_numpy()
    assert not (hidden & ~observed).any()  # only observed values are hidden
    first = ~df.duplicated("id").to_numpy()
    assert not hidden[first].any()
    assert abs(hidden.sum() / observed.sum() - 0.5) < 0.03
    assert cond[["a", "b"]].isna().to_numpy()[hidden].all()
    np.testing.assert_array_equal(cond[["a", "b"]].to_numpy()[~hidden & observed],
                                  df[["a", "b"]].to_numpy()[~hidden & observed])
    pd.testing.assert_frame_equal(df, before)


def test_feature_shares_add_up_to_the_score(bench):
    df = _frame()
    mask = df[["a", "b"]].notna().to_numpy()
    pred = np.zeros((len(df), 2))
    shares = bench.feature_shares(df, pred, mask, ["a", "b"])
    # a: stay 1 (1 + 25) / 2 = 13, stay 2 4 -> mean 8.5, / 2 features; b: stay 1 16, stay 2 0
    assert shares["a"] == pytest.approx(8.5 / 2)
    assert shares["b"] == pytest.approx(8.0 / 2)
    assert shares.sum() == pytest.approx(bench.score(df, pred, mask, ["a", "b"]))


TINY = ["--allow-sample", "--subset", "30", "--epochs", "1", "--solver", "rk4",
        "--gradient", "backprop", "--latent-dim", "3", "--rec-dim", "6", "--units", "8",
        "--n-layers", "1", "--gru-units", "6", "--batch-size", "12", "--verbose", "0"]


def test_tiny_run_prints_the_table_and_reloads_identically(bench, tmp_path, capsys):
    threads = torch.get_num_threads()
    data = ["--data", str(tmp_path / "no-archive-here")]
    try:
        res = bench.main([*data, *TINY, "--obs-std", "0.1", "--per-feature", "3",
                          "--save", str(tmp_path / "m.pt"), "--out", str(tmp_path / "r.json")])
        out = capsys.readouterr().out
        again = bench.main([*data, "--allow-sample", "--subset", "30", "--verbose", "0",
                            "--load", str(tmp_path / "m.pt")])
    finally:
        torch.set_num_threads(threads)
    assert "bundled 300-stay sample" in out and "obs_std 0.1" in out
    tasks = [r["task"] for r in res["rows"]]
    assert tasks == ["interpolation", "extrapolation", "held-out interpolation (50% hidden)"]
    for row in res["rows"]:
        assert math.isfinite(row["ours"]) and row["ours"] > 0
    assert res["rows"][0]["published"] == pytest.approx(2.118e-3)
    assert {"LOCF", "linear"} <= set(res["rows"][2])
    assert res["epochs"] == 1 and res["n_test_stays"] == 6
    assert (tmp_path / "r.json").exists()
    for task, share in res["per_feature"].items():
        row = next(r for r in res["rows"] if r["task"] == task)
        assert sum(share.values()) == pytest.approx(row["ours"])
        assert f"{task}, largest per-feature shares" in out
    # the saved model gives the same figures on the same split
    for a, b in zip(res["rows"], again["rows"]):
        assert b["ours"] == pytest.approx(a["ours"], rel=1e-6)
