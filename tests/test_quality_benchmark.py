"""``benchmarks/quality.py``: a tiny run prints one row per data set and scores the model and
every baseline on exactly the same entries."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from _settings import BENCHMARKS, load_script

from latentode.evaluation import mse
from latentode.utils import torch_threads

TINY = ["--param", "latent_dim=3", "--param", "rec_dim=6", "--param", "units=8", "--param",
        "n_layers=1", "--param", "gru_units=8", "--param", "encoder='gru'", "--param",
        "gradient='backprop'"]


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCHMARKS / "quality.py")


@pytest.fixture(scope="module")
def tiny_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality") / "q.json"
    buf = io.StringIO()
    with torch_threads(torch.get_num_threads()), contextlib.redirect_stdout(buf):
        res = bench.main(["--datasets", "walk", "ou", "--epochs", "1", "--n-series", "24",
                          "--breakdown", "--out", str(out), *TINY])
    return res, buf.getvalue(), out


def test_table_structure(bench, tiny_run) -> None:
    res, text, out = tiny_run
    assert list(res) == ["walk", "ou"]
    assert "LatentODERegressor defaults but max_epochs=1, random_state=0" in text
    header = next(line for line in text.splitlines() if line.startswith("| data set |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["data set", "held-out: model", "held-out: linear", "held-out: LOCF",
                     "held-out: mean", "held-out: ratio", "held-out: oracle", "forecast: model",
                     "forecast: LOCF", "forecast: mean", "forecast: ratio", "forecast: oracle",
                     "forecast: reversion (data)", "epochs (best)", "fit s"]
    rows = [line for line in text.splitlines() if line.startswith(("| walk |", "| ou |"))]
    assert len(rows) == 2 and all(len(r.strip("|").split("|")) == len(cells) for r in rows)
    for r in res.values():
        for task, methods in bench.METHODS.items():
            t = r["tasks"][task]
            assert set(t["mse"]) == set(methods)
            assert all(math.isfinite(v) and v >= 0 for v in t["mse"].values())
            best = min(t["mse"][m] for m in methods if m != "model")
            assert t["ratio"] == pytest.approx(t["mse"]["model"] / best)
            assert t["mse"][t["best"]] == best
        assert r["epochs"] == 1 and r["n_test"] == 6  # a quarter of 24 series
    assert "forecast reversion toward the training mean" in text
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"walk", "ou"}
    assert "_pred" not in saved["results"]["walk"]["tasks"]["held-out"]
    assert saved["params"]["encoder"] == "gru"


def test_every_method_scored_on_the_same_entries(bench, tiny_run) -> None:
    res, _, _ = tiny_run
    for r in res.values():
        cols = r["columns"]
        for task, t in r["tasks"].items():
            truth, cond, mask = t["_truth"], t["_cond"], t["_mask"]
            assert mask.shape == (len(truth), len(cols)) and mask.sum() == t["n"] > 0
            assert truth[cols].to_numpy()[mask].size == t["n"]
            assert not np.isnan(truth[cols].to_numpy()[mask]).any()  # scored = observed
            n_scored = set()
            for pred in t["_pred"].values():
                np.testing.assert_array_equal(pred["id"].to_numpy(), truth["id"].to_numpy())
                np.testing.assert_array_equal(pred["t"].to_numpy(), truth["t"].to_numpy())
                n_scored.add(int(np.isfinite(pred[cols].to_numpy()[mask]).sum()))
            assert n_scored == {t["n"]}  # every method predicts every scored entry
            if task == "held-out":
                # hidden entries: invisible in the conditioning frame, same rows as the truth
                assert np.isnan(cond[cols].to_numpy()[mask]).all()
            else:
                assert cond["t"].max() < truth["t"].min()  # forecasts lie past the cutoff
                assert set(truth["id"]) <= set(cond["id"])


def test_reported_mse_recomputed(bench, tiny_run) -> None:
    """The table's numbers are the MSE of each method on the task's mask (numbers)."""
    res, _, _ = tiny_run
    for r in res.values():
        cols = r["columns"]
        for t in r["tasks"].values():
            for m, pred in t["_pred"].items():
                got = t["oracle"] if m == "oracle" else t["mse"][m]
                assert got == pytest.approx(mse(
                    t["_truth"], pred, t["_mask"], columns=cols, loc=r["loc"],
                    scale=r["scale"]), rel=1e-12)
    # a random walk: interpolating between neighbours beats the series' mean by far, and
    # carrying the last value forward beats the mean of the past for forecasts
    t, f = res["walk"]["tasks"]["held-out"], res["walk"]["tasks"]["forecast"]
    assert t["mse"]["linear"] < 0.5 * t["mse"]["mean"]
    assert f["mse"]["LOCF"] < f["mse"]["mean"] and f["best"] == "LOCF"


def test_reversion_slope(bench) -> None:
    last = np.array([[1.0], [-2.0], [3.0], [np.nan]])
    mask = np.array([[True], [True], [True], [False]])
    mean = np.array([0.5])
    assert bench.reversion(last, last, mean, mask) == pytest.approx(0.0)
    assert bench.reversion(np.full_like(last, 0.5), last, mean, mask) == pytest.approx(1.0)
    halfway = last + 0.5 * (mean - last)
    assert bench.reversion(halfway, last, mean, mask) == pytest.approx(0.5)


def test_oracle_knows_the_process(bench) -> None:
    """With the process known, the oracle forecasts a nearly noise-free oscillator almost
    exactly, and a random walk's forecast is flat at its filtered last value."""
    from latentode.evaluation import locf

    case = bench.SUITE["oscillators"]
    case = case._replace(n_series=12, options={**case.options, "noise_std": 0.01})
    df = bench.make_case(case, 3)
    cols = ["x0", "x1"]
    early, fut = bench._forecast_rows(df, cols, 6.0)
    past, future = df[early], df[fut]
    mask = future[cols].notna().to_numpy()
    fc = bench.oracle(case, past, future, cols)
    assert mse(future, fc, mask, columns=cols) < 1e-3
    assert mse(future, locf(past, future[["id", "t"]], columns=cols), mask, columns=cols) > 0.1
    walk = bench.SUITE["walk"]._replace(n_series=5)
    df = bench.make_case(walk, 0)
    early, fut = bench._forecast_rows(df, ["x0"], 6.0)
    fc = bench.oracle(walk, df[early], df[fut], ["x0"])
    assert fc.groupby("id")["x0"].nunique().eq(1).all()
    assert bench.oracle(bench.SUITE["periodic"], df[early], df[fut], ["x0"]) is None


def test_point_rules_score_the_same_fit(bench) -> None:
    """``--point-rules``: one fit, each rule's predictions on the same entries, the baselines
    identical; the model's MSEs are those of its own predictions."""
    buf = io.StringIO()
    with torch_threads(torch.get_num_threads()), contextlib.redirect_stdout(buf):
        res = bench.main(["--datasets", "ou", "--epochs", "1", "--n-series", "24",
                          "--point-rules", "posterior_mean", "predictive_mean", *TINY])
    text, r = buf.getvalue(), res["ou"]
    assert "point_prediction='posterior_mean'" in text
    assert "point_prediction='predictive_mean'" in text
    assert sum(line.startswith("| ou |") for line in text.splitlines()) == 2
    path, pm = r["point_rules"]["posterior_mean"], r["point_rules"]["predictive_mean"]
    assert r["tasks"] is path and set(r["predict_s"]) == {"posterior_mean", "predictive_mean"}
    for task in ("held-out", "forecast"):
        a, b = path[task], pm[task]
        np.testing.assert_array_equal(a["_mask"], b["_mask"])
        for m in bench.METHODS[task][1:]:  # the baselines do not depend on the rule
            assert a["mse"][m] == b["mse"][m]
        assert a["mse"]["model"] != b["mse"]["model"]
        assert b["mse"]["model"] == pytest.approx(mse(
            b["_truth"], b["_pred"]["model"], b["_mask"], columns=r["columns"], loc=r["loc"],
            scale=r["scale"]), rel=1e-12)


def test_model_seed_changes_the_fit_not_the_data(bench, tiny_run, tmp_path) -> None:
    res, _, _ = tiny_run
    buf = io.StringIO()
    out = tmp_path / "m.json"
    with torch_threads(torch.get_num_threads()), contextlib.redirect_stdout(buf):
        other = bench.main(["--datasets", "walk", "--epochs", "1", "--n-series", "24",
                            "--model-seed", "7", "--out", str(out), *TINY])
    assert "max_epochs=1, random_state=7" in buf.getvalue()
    saved = json.loads(out.read_text())
    assert (saved["seed"], saved["model_seed"]) == (0, 7)
    for task in ("held-out", "forecast"):
        ours, theirs = res["walk"]["tasks"][task]["mse"], other["walk"]["tasks"][task]["mse"]
        # the same data, test split and hidden values: every baseline identical ...
        assert {m: v for m, v in ours.items() if m != "model"} == \
            {m: v for m, v in theirs.items() if m != "model"}
        # ... and another network
        assert ours["model"] != theirs["model"]
