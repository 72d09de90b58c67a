"""``benchmarks/physionet.py --protocol tpatchgnn``: t-PatchGNN's 24 h -> next 24 h forecast.

The data handling (split, scaling, the cut at 24 h, the scored values, the metric, the linear
trend baseline) is checked with exact numbers on tiny frames; a tiny end-to-end run on the
bundled sample checks the command line, the table and save / load.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import load_script

from latentode.utils import torch_threads

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "physionet.py"
TINY = ["--allow-sample", "--subset", "60", "--epochs", "1", "--solver", "rk4",
        "--gradient", "backprop", "--latent-dim", "3", "--rec-dim", "6", "--units", "8",
        "--n-layers", "1", "--gru-units", "6", "--batch-size", "12", "--verbose", "0"]


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH, "physionet_tpatchgnn_under_test")


def test_split_is_60_20_20_with_validation_the_tail_of_the_seen_stays(bench):
    from sklearn.model_selection import train_test_split

    ids = np.random.default_rng(0).permutation(np.arange(100, 200))
    train, val, test = bench.tpatch_split(ids)
    assert (len(train), len(val), len(test)) == (60, 20, 20)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(100, 200))
    # sorted ids, the first split shuffled with random_state 42, the second not shuffled
    seen, test42 = train_test_split(np.arange(100, 200), train_size=0.8, random_state=42)
    assert np.array_equal(test, test42)
    assert np.array_equal(np.concatenate([train, val]), seen)
    assert np.array_equal(val, seen[60:])
    again = bench.tpatch_split(ids[::-1])  # the order the ids come in does not matter
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test)))
    sub = bench.tpatch_split(ids, subset=20, seed=3)
    assert [len(p) for p in sub] == [12, 4, 4]
    assert set(np.concatenate(sub)) <= set(ids)


def _frame() -> pd.DataFrame:
    rows = []
    for i, sid in enumerate(range(1, 11)):  # 10 stays: 6 train, 2 validation, 2 test
        rows += [(sid, 0.0, 50.0 + i, -1.0 if i == 0 else 170.0),
                 (sid, 23.5, 60.0 + 2 * i, np.nan),
                 (sid, 24.0, 70.0 + 3 * i, np.nan),
                 (sid, 30.0, np.nan, np.nan),  # nothing observed: neither history nor future
                 (sid, 47.0, 40.0 + 10 * i, np.nan)]
    return pd.DataFrame(rows, columns=["id", "t", "HR", "Height"])


def test_scaling_uses_the_seen_stays_only_and_leaves_the_frame_alone(bench):
    df = _frame()
    before = df.copy()
    parts = bench.tpatch_frames(df, ["HR", "Height"])
    pd.testing.assert_frame_equal(df, before)
    seen_ids = np.concatenate([parts["train"]["id"].unique(), parts["val"]["id"].unique()])
    assert len(seen_ids) == 8 and parts["test"]["id"].nunique() == 2
    raw_seen = df[df["id"].isin(seen_ids)]
    lo, hi = raw_seen["HR"].min(), raw_seen["HR"].max()
    assert (parts["min"]["HR"], parts["max"]["HR"]) == (lo, hi)
    seen = pd.concat([parts["train"], parts["val"]])
    assert seen["HR"].min() == 0.0 and seen["HR"].max() == 1.0
    raw_test = df[df["id"].isin(parts["test"]["id"].unique())].reset_index(drop=True)
    np.testing.assert_allclose(parts["test"]["HR"], (raw_test["HR"] - lo) / (hi - lo))
    # -1 (unknown) is a value as in t-PatchGNN: stay 1's Height is the minimum where seen
    assert parts["min"]["Height"] == (-1.0 if 1 in seen_ids else 170.0)


def test_history_is_before_24_h_and_every_later_value_is_scored(bench):
    df = _frame()
    history, future, scored = bench.history_and_future(df, ["HR", "Height"])
    assert sorted(history["t"].unique()) == [0.0, 23.5]
    assert sorted(future["t"].unique()) == [24.0, 47.0]  # 24 h itself is forecast; 30 h empty
    assert scored.shape == (20, 2) and scored[:, 0].all() and not scored[:, 1].any()
    assert len(history) == 20


def test_errors_pool_each_parameter_over_all_stays_then_average_parameters(bench):
    truth = pd.DataFrame({"id": [1, 1, 2], "t": [24.0, 30.0, 25.0], "a": [1.0, 2.0, 0.0],
                          "b": [np.nan, 4.0, np.nan], "c": [np.nan] * 3})
    pred = pd.DataFrame({"a": [2.0, 2.0, 3.0], "b": [0.0, 2.0, 9.0], "c": [0.0] * 3})
    mask = truth[["a", "b", "c"]].notna().to_numpy().copy()
    res = bench.protocol_errors(truth, pred, mask, ["a", "b", "c"])
    # a: errors 1, 0, 3 -> MSE 10 / 3, MAE 4 / 3; b: one error 2 -> 4, 2; c: no value, left out
    assert res["mse"] == pytest.approx((10 / 3 + 4) / 2)
    assert res["mae"] == pytest.approx((4 / 3 + 2) / 2)
    assert res["n_values"] == 4 and res["n_params"] == 2
    assert res["per_param_mse"] == pytest.approx({"a": 10 / 3, "b": 4.0})
    mask[2, 1] = True  # a scored entry that was not observed is an error, not a number
    with pytest.raises(ValueError, match="'b'"):
        bench.protocol_errors(truth, pred, mask, ["a", "b", "c"])


def test_linear_trend_extrapolates_the_least_squares_line(bench):
    history = pd.DataFrame({"id": [1, 1, 1, 2, 2], "t": [0.0, 1.0, 2.0, 5.0, 5.0],
                            "a": [0.0, 1.5, 2.0, 4.0, np.nan], "b": [np.nan] * 5})
    query = pd.DataFrame({"id": [1, 2, 3], "t": [4.0, 30.0, 1.0]})
    out = bench.linear_trend(history, query, ["a", "b"], pd.Series({"a": -7.0, "b": 0.5}))
    # stay 1: slope 1, intercept 1/6 (least squares through (0, 0), (1, 1.5), (2, 2))
    assert out["a"].tolist() == pytest.approx([1 / 6 + 4.0, 4.0, -7.0])
    assert out["b"].tolist() == [0.5, 0.5, 0.5]  # never observed: the fallback


def test_tiny_run_prints_the_protocol_table_and_reloads(bench, tmp_path, capsys):
    data = ["--data", str(tmp_path / "no-archive-here")]
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main([*data, *TINY, "--protocol", "tpatchgnn", "--per-feature", "3",
                          "--save", str(tmp_path / "m.pt"), "--out", str(tmp_path / "r.json")])
        out = capsys.readouterr().out
        again = bench.main([*data, "--allow-sample", "--subset", "60", "--verbose", "0",
                            "--protocol", "tpatchgnn", "--load", str(tmp_path / "m.pt")])
        with pytest.raises(SystemExit, match="--static"):
            bench.main([*data, *TINY, "--protocol", "tpatchgnn", "--static"])
    assert "t-PatchGNN protocol" in out and "Zhang et al. 2024, Table 1" in out
    assert "largest per-parameter MSE" in out
    assert (res["n_train_stays"], res["n_val_stays"], res["n_test_stays"]) == (36, 12, 12)
    assert [r["method"] for r in res["rows"]] == ["Latent ODE (ours)", "LOCF", "linear trend",
                                                  "stay mean", "training mean"]
    n = {r["n_values"] for r in res["rows"]}
    assert len(n) == 1 and n.pop() > 0  # every figure on the same values
    for r in res["rows"]:
        assert math.isfinite(r["mse"]) and math.isfinite(r["mae"]) and r["mse"] > 0
    assert res["epochs"] == 1 and res["model"]["readout"] == "latent"
    assert (tmp_path / "r.json").exists()
    for a, b in zip(res["rows"], again["rows"]):
        assert b["mse"] == pytest.approx(a["mse"], rel=1e-6)
        assert b["mae"] == pytest.approx(a["mae"], rel=1e-6)
