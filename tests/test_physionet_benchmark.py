"""``benchmarks/physionet.py``: a tiny end-to-end run (protocol, table, save and reload).

The end-to-end run uses the bundled 300-stay sample (``--allow-sample`` with an absent archive
path), so it needs neither the shared archive nor more than a few seconds. Its baselines, the
hiding of values and the metric breakdown are :mod:`latentode.evaluation`'s, tested with exact
values in ``tests/test_evaluation.py``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import load_script

from latentode.demo import FORECAST_OPTIONS
from latentode.utils import torch_threads

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "physionet.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


TINY = ["--allow-sample", "--subset", "30", "--epochs", "1", "--solver", "rk4",
        "--gradient", "backprop", "--latent-dim", "3", "--rec-dim", "6", "--units", "8",
        "--n-layers", "1", "--gru-units", "6", "--batch-size", "12", "--verbose", "0"]


def test_tiny_run_prints_the_table_and_reloads_identically(bench, tmp_path, capsys):
    data = ["--data", str(tmp_path / "no-archive-here")]
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main([*data, *TINY, "--obs-std", "0.1", "--per-feature", "3",
                          "--save", str(tmp_path / "m.pt"), "--out", str(tmp_path / "r.json")])
        out = capsys.readouterr().out
        again = bench.main([*data, "--allow-sample", "--subset", "30", "--verbose", "0",
                            "--load", str(tmp_path / "m.pt")])
    assert "bundled 300-stay sample" in out and "obs_std 0.1" in out
    tasks = [r["task"] for r in res["rows"]]
    assert tasks == ["interpolation", "extrapolation", "held-out interpolation (50% hidden)"]
    for row in res["rows"]:
        assert math.isfinite(row["ours"]) and row["ours"] > 0
    assert res["rows"][0]["published"] == pytest.approx(2.118e-3)
    assert {"LOCF", "linear"} <= set(res["rows"][2])
    assert res["epochs"] == 1 and res["n_test_stays"] == 6
    # the fit's time: its epochs apart from the rest (data preparation, calibration), printed
    assert 0 < res["epochs_s"] < res["fit_s"] and "of which epochs" in out
    assert again["fit_s"] == again["epochs_s"] == pytest.approx(res["epochs_s"])  # reloaded
    assert (tmp_path / "r.json").exists()
    for task, share in res["per_feature"].items():
        row = next(r for r in res["rows"] if r["task"] == task)
        assert sum(share.values()) == pytest.approx(row["ours"])
        assert f"{task}, largest per-feature shares" in out
    # the saved model gives the same figures on the same split
    for a, b in zip(res["rows"], again["rows"]):
        assert b["ours"] == pytest.approx(a["ours"], rel=1e-6)


def test_tiny_classification_run(bench, tmp_path, capsys):
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main(["--task", "classification", "--data", str(tmp_path / "none"),
                          *TINY[:1], "--subset", "100", *TINY[3:], "--repeats", "2", "--static",
                          "--classifier-dropout", "0.25", "--weight-decay", "1e-4",
                          "--weight-averaging", "0.5",
                          "--out", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert "in-hospital mortality" in out and "mean +- sd over 2 splits" in out
    assert [r["split_seed"] for r in res["rows"]] == [42, 43]
    for row in res["rows"]:
        for key in ("auc_roc", "auc_pr", "baseline_auc_roc", "baseline_auc_pr",
                    "boosting_auc_roc", "boosting_auc_pr"):
            assert 0.0 <= row[key] <= 1.0
        assert row["n_train"] == 80 and row["n_test"] == 20 and row["epochs"] == 1
    assert res["static"] == ["Age", "Gender", "Height", "ICUType"]
    assert (tmp_path / "c.json").exists()
    clf = bench.build_classifier(argparse.Namespace(**res["args"]))
    assert (clf.classifier_dropout, clf.weight_decay) == (0.25, 1e-4)
    assert clf.weight_averaging == 0.5
    assert "weight_averaging 0.5), static" in out


def test_classification_trace_replays_the_restored_epoch(bench, tmp_path, capsys):
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main(["--task", "classification", "--data", str(tmp_path / "none"),
                          *TINY[:1], "--subset", "100", *TINY[3:], "--epochs", "3",
                          "--val-fraction", "0.3", "--no-early-stopping", "--trace",
                          "--scoring", "log_loss"])
    out = capsys.readouterr().out
    assert "--trace: test AUC-ROC of the epoch each early-stopping rule restores" in out
    row = res["rows"][0]
    assert row["epochs"] == 3 and len(row["test_auc_per_epoch"]) == 3
    # beside it, the probability averaged over 32 posterior samples of z_t0: another score of
    # the same weights, replayed by the same rules
    assert len(row["test_auc_mc_per_epoch"]) == 3
    assert "averaged over 32 samples of z_t0" in out
    assert all(0.0 <= mc <= 1.0 for mc in row["test_auc_mc_per_epoch"])
    assert row["rules_mc"]["val_log_loss/p10"]["epoch"] == row["best_epoch"]
    curve = row["val_curves"]["val_log_loss"]
    assert row["best_epoch"] == min(range(3), key=curve.__getitem__)
    # the replayed rule of the run's own setting restores the epoch the fit restored, and its
    # test scores are those of predict_proba with the restored weights
    for patience in (5, 10, 20):  # 3 epochs = max_epochs: every rule ends with the run
        rule = row["rules"][f"val_log_loss/p{patience}"]
        assert rule["epoch"] == row["best_epoch"]
        assert rule["test_auc"] == pytest.approx(row["auc_roc"], abs=1e-12)
        assert rule["test_ap"] == pytest.approx(row["auc_pr"], abs=1e-12)
    # the replay of a rule from records: strict improvement, stop after `patience` bad epochs
    rules = bench.stopping_rules({"val_loss": [3.0, 2.0, 2.5, 2.5, 1.0],
                                  "val_roc_auc": [0.6, 0.7, 0.7, 0.65, 0.9]},
                                 [0.1, 0.2, 0.3, 0.4, 0.5], [0.0] * 5, max_epochs=10,
                                 patiences=(2, 3))
    assert rules["val_loss/p2"]["epoch"] == 1 and rules["val_loss/p2"]["test_auc"] == 0.2
    assert rules["val_roc_auc/p2"]["epoch"] == 1
    assert rules["val_loss/p3"]["epoch"] is None  # 5 of 10 epochs run: not decided yet
    assert rules["val_log_loss/p2"]["epoch"] is None


def test_tiny_run_breaks_the_held_out_error_down(bench, tmp_path, capsys):
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main(["--data", str(tmp_path / "no-archive-here"), *TINY, "--breakdown"])
    out = capsys.readouterr().out
    assert "held-out values by position" in out and "share of the gap" in out
    bd = res["breakdown"]
    assert bd["edges_h"] == list(bench.GAP_EDGES_H)
    by_gap = {(r["position"], r["gap"]): r for r in bd["by_gap"]}
    total = by_gap["all", "all"]
    # every held-out value counted once: the buckets of each position add up to its row, the
    # positions to the total
    positions = [p for p in ("inside", "before", "after") if (p, "all") in by_gap]
    for p in positions:
        cells = [r for (q, g), r in by_gap.items() if q == p and g != "all"]
        assert sum(r["n"] for r in cells) == by_gap[p, "all"]["n"]
        for m in ("model", "linear", "LOCF", "mean"):
            pooled = sum(r["n"] * r[m] for r in cells) / by_gap[p, "all"]["n"]
            assert pooled == pytest.approx(by_gap[p, "all"][m])
    none = by_gap.get(("none", "none"), {"n": 0})
    assert sum(by_gap[p, "all"]["n"] for p in positions) + none["n"] == total["n"] > 0
    # after the last visible value linear interpolation and LOCF carry the same value
    if ("after", "all") in by_gap:
        assert by_gap["after", "all"]["linear"] == pytest.approx(by_gap["after", "all"]["LOCF"])
    # the channels' shares add up to the difference of the task's two paper-MSE figures
    row = next(r for r in res["rows"] if r["task"].startswith("held-out"))
    chans = bd["by_channel"]
    assert sum(r["paper_excess"] for r in chans) == pytest.approx(row["ours"] - row["linear"])
    assert [r["paper_excess"] for r in chans] == sorted((r["paper_excess"] for r in chans),
                                                        reverse=True)
    assert sum(r["n"] for r in chans) == total["n"]
    # the model's error on the values it conditioned on, beside: as many as were not hidden
    assert bd["visible"]["n"] > 0 and math.isfinite(bd["visible"]["model"])
    assert "visible values themselves" in out


def test_descriptor_roles_static_and_series_only(bench):
    import pandas as pd

    df = pd.DataFrame({"id": [1, 1, 2], "t": [0.0, 1.0, 0.0], "HR": [float("nan"), 80.0, 70.0],
                       "Age": [60.0, float("nan"), 70.0], "Gender": [1.0, float("nan"), 0.0],
                       "Height": [1.7, float("nan"), 1.8], "ICUType": [2.0, float("nan"), 3.0]})
    cols = ["Age", "Gender", "Height", "ICUType", "HR"]
    same, channels, static, scored = bench.descriptor_roles(df, cols, False, False)
    assert same is df and channels == cols and static == [] and scored == cols
    same, channels, static, scored = bench.descriptor_roles(df, cols, False, True)
    assert same is df and channels == cols and static == [] and scored == ["HR"]
    frame, channels, static, scored = bench.descriptor_roles(df, cols, True, False)
    assert channels == scored == ["HR"] and static == ["Age", "Gender", "Height", "ICUType"]
    assert frame["Age"].tolist() == [60.0, 60.0, 70.0]  # each stay's value on all its rows
    assert isinstance(frame["ICUType"].dtype, pd.CategoricalDtype)
    assert frame["ICUType"].tolist() == [2.0, 2.0, 3.0]
    assert df["Age"].isna().sum() == 1 and df["ICUType"].dtype == float  # caller's untouched


def test_tiny_reconstruction_with_static_descriptors(bench, tmp_path, capsys):
    """Descriptors as static covariates vs as channels: the same 37 channels, masks, stays."""
    data = ["--data", str(tmp_path / "no-archive-here")]
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        static = bench.main([*data, *TINY, "--static", "--save", str(tmp_path / "s.pt")])
        out = capsys.readouterr().out
        channels = bench.main([*data, *TINY, "--score-series-only"])
        out_channels = capsys.readouterr().out
        again = bench.main([*data, "--allow-sample", "--subset", "30", "--verbose", "0",
                            "--static", "--load", str(tmp_path / "s.pt")])
    assert "Descriptors Age, Gender, Height, ICUType as static covariates" in out
    assert "as channels; scored on the 37 other channels" in out_channels
    assert len(static["scored_cols"]) == 37 and "Age" not in static["scored_cols"]
    assert static["scored_cols"] == channels["scored_cols"]
    assert static["static"] == ["Age", "Gender", "Height", "ICUType"] and channels["static"] == []
    for a, b in zip(static["rows"], channels["rows"]):
        assert a["task"] == b["task"] and a["published"] is None and b["published"] is None
        assert math.isfinite(a["ours"]) and a["ours"] > 0
        for base in ("LOCF", "linear"):  # the same scored entries of the same stays
            if base in a:
                assert a[base] == pytest.approx(b[base], rel=1e-12)
    # the saved model keeps its static covariates and gives the same figures
    for a, b in zip(static["rows"], again["rows"]):
        assert b["ours"] == pytest.approx(a["ours"], rel=1e-6)


@pytest.mark.parametrize("model", ["logistic", "boosting"])
def test_summary_baselines_read_the_summaries(bench, model):
    """Both baselines see the per-stay summaries: a label set by a channel's level is
    recovered on stays they did not train on; a channel never measured is no obstacle."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    level = rng.normal(size=120)
    rows = [{"id": i, "t": t, "HR": level[i] + 0.1 * rng.normal(), "MAP": np.nan}
            for i in range(120) for t in np.sort(rng.uniform(0, 48, 5))]
    df = pd.DataFrame(rows)
    y = pd.Series((level > 0).astype(int), index=np.arange(120))
    train, test = df[df["id"] < 80], df[df["id"] >= 80]
    proba = bench.summary_baseline(train, y, test, ["HR", "MAP"], model)
    assert list(proba.index) == list(range(80, 120))
    assert roc_auc_score(y.loc[proba.index], proba) > 0.95
    with pytest.raises(ValueError, match="'logistic' or 'boosting'"):
        bench.summary_baseline(train, y, test, ["HR"], "forest")


@pytest.mark.parametrize("flags, changed", [
    ([], {}),
    (["--dynamics-activation", "elu", "--likelihood", "student_t"],
     {"dynamics_activation": "elu", "likelihood": "student_t"}),
    (["--readout-sides", "split", "--forecast-noise"],
     {"readout_sides": "split", "forecast_noise": True}),
    (["--readout-sides", "shared", "--no-forecast-noise", "--forecast-share", "0",
      "--forecast-mode", "swap"],
     {"readout_sides": "shared", "forecast_noise": False, "forecast_share": 0.0,
      "forecast_mode": "swap"}),
    (["--forecast-share", "0.5", "--forecast-mode", "add"],
     {"forecast_share": 0.5, "forecast_mode": "add"}),
    (["--posterior-time", "last"], {"posterior_time": "last"}),
    (["--dynamics-activation", "elu", "--input-fences", "2"],
     {"dynamics_activation": "elu", "input_fences": 2.0}),
])
def test_dynamics_and_likelihood_flags_reach_the_estimator(bench, monkeypatch, flags, changed):
    """Each flag reaches the estimator; without it, the option is the estimator's default
    (the forecast training options included: they follow a change of the defaults)."""
    from latentode import LatentODERegressor

    class Built(Exception):
        pass

    seen: dict = {}

    def run(args):  # stands in for the training run: record the estimator, stop
        seen.update(bench.build_estimator(args).get_params())
        raise Built

    monkeypatch.setattr(bench, "run", run)
    with pytest.raises(Built):
        bench.main(["--verbose", "0", *flags])
    names = ("dynamics_activation", "likelihood", "posterior_time", "input_fences",
             *FORECAST_OPTIONS)
    default = LatentODERegressor().get_params()
    assert {k: seen[k] for k in names} == {**{k: default[k] for k in names}, **changed}
    with pytest.raises(SystemExit):  # the choices are the likelihood registry's names
        bench.main(["--likelihood", "laplace"])



@pytest.mark.parametrize("flags, changed", [
    ([], {}),
    (["--obs-weighting", "channel", "--gradient", "backprop", "--val-fraction", "0"],
     {"obs_weighting": "channel", "gradient": "backprop", "validation_fraction": 0.0,
      "early_stopping": False}),
    (["--point-prediction", "posterior_mean"], {"point_prediction": "posterior_mean"}),
    (["--patience", "4", "--no-early-stopping"], {"patience": 4, "early_stopping": False}),
])
def test_estimator_defaults_fit_the_library_defaults(bench, monkeypatch, flags, changed):
    """``--estimator-defaults`` fits ``LatentODERegressor()`` but the run's own settings and the
    flags given beside it; without it the script's paper set-up differs from the defaults."""
    from latentode import LatentODERegressor

    class Built(Exception):
        pass

    seen: dict = {}

    def run(args):  # stands in for the training run: record the estimator, stop
        est = bench.build_estimator(args)
        if args.point_prediction:  # as run() does
            est.set_params(point_prediction=args.point_prediction)
        seen[args.estimator_defaults] = est.get_params()
        raise Built

    monkeypatch.setattr(bench, "run", run)
    own = ["--epochs", "7", "--seed", "3", "--threads", "1", "--verbose", "0"]
    for extra in (["--estimator-defaults"], []):
        with pytest.raises(Built):
            bench.main([*extra, *own, *flags])
    defaults = LatentODERegressor(max_epochs=7, random_state=3, n_jobs=1, verbose=0,
                                  **changed).get_params()
    assert seen[True] == defaults
    paper = {k for k, v in seen[False].items() if v != defaults[k]}
    assert {"readout", "kl_warmup"} <= paper  # the paper's set-up is not the defaults
    with pytest.raises(SystemExit):
        bench.main(["--estimator-defaults", "--task", "classification"])


def test_classification_members_average_the_probabilities(bench, tmp_path, capsys,
                                                          monkeypatch):
    from sklearn.metrics import roc_auc_score

    fitted, probas = [], []
    build = bench.build_classifier

    def recording(args):  # every classifier the run fits, and the probabilities it gives
        clf = build(args)
        predict = clf.predict_proba
        clf.predict_proba = lambda df: probas.append(predict(df)) or probas[-1]
        fitted.append(clf)
        return clf

    monkeypatch.setattr(bench, "build_classifier", recording)
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main(["--task", "classification", "--data", str(tmp_path / "none"),
                          *TINY[:1], "--subset", "100", *TINY[3:], "--members", "3"])
    out = capsys.readouterr().out
    row = res["rows"][0]
    assert [c.random_state for c in fitted] == [42, 1042, 2042]
    assert len(probas) == 3 and all(p.index.equals(probas[0].index) for p in probas)
    _, labels, _ = bench.load_labelled(argparse.Namespace(**res["args"]))
    truth = labels.loc[probas[0].index]
    assert not any(p[1].isna().any() for p in probas)  # no fill needed on these stays
    # the first member is the ordinary fit; the others are other models
    assert row["member_auc_roc"] == pytest.approx([roc_auc_score(truth, p[1]) for p in probas],
                                                  abs=1e-12)
    assert row["member_auc_roc"][0] == row["auc_roc"]
    assert not np.allclose(probas[0][1], probas[1][1])
    # the ensemble scores the members' averaged probability
    assert row["ensemble_auc_roc"] == pytest.approx(
        roc_auc_score(truth, (probas[0][1] + probas[1][1] + probas[2][1]) / 3), abs=1e-12)
    assert "averaged over 3 classifiers" in out and "ensemble - first member" not in out


def test_save_proba_writes_every_member_and_the_baselines(bench, tmp_path, monkeypatch):
    from sklearn.metrics import roc_auc_score

    states = []
    build = bench.build_classifier

    def recording(args):
        clf = build(args)
        fit = clf.fit
        clf.fit = lambda *a, **k: states.append(clf.random_state) or fit(*a, **k)
        return clf

    monkeypatch.setattr(bench, "build_classifier", recording)
    path = tmp_path / "sub" / "p.csv"
    with torch_threads(torch.get_num_threads()):  # the benchmark sets its own
        res = bench.main(["--task", "classification", "--data", str(tmp_path / "none"),
                          *TINY[:1], "--subset", "100", *TINY[3:], "--repeats", "2",
                          "--members", "2", "--member-start", "1", "--save-proba", str(path)])
    assert states == [1042, 2042, 1043, 2043]  # members 1 and 2 of splits 42 and 43
    saved = pd.read_csv(path)
    assert list(saved.columns) == ["split_seed", "id", "label", "member_1", "member_2",
                                   "logistic", "boosting"]
    assert saved.groupby("split_seed").size().to_dict() == {42: 20, 43: 20}
    for row in res["rows"]:
        split = saved[saved["split_seed"] == row["split_seed"]]
        # the file's probabilities give the run's figures to the last digit
        assert roc_auc_score(split["label"], split["member_1"]) == row["auc_roc"]
        assert roc_auc_score(split["label"], split["logistic"]) == row["baseline_auc_roc"]
        assert roc_auc_score(split["label"], split["boosting"]) == row["boosting_auc_roc"]
        assert roc_auc_score(split["label"], (split["member_1"] + split["member_2"]) / 2) \
            == pytest.approx(row["ensemble_auc_roc"], abs=1e-12)
        assert int(split["label"].sum()) == row["test_deaths"]


def _proba(seeds=(1, 2), ids=(10, 11, 12, 13), labels=(0, 1, 0, 1), members=1, shift=0.0):
    """A --save-proba frame with hand-set probabilities (member m: 0.1 m + id / 100 + shift)."""
    rows = [{"split_seed": s, "id": i, "label": y,
             **{f"member_{m}": 0.1 * m + i / 100 + shift + 0.05 * y * (s % 2)
                for m in range(members)},
             "logistic": i / 50, "boosting": 0.3 + 0.02 * y}
            for s in seeds for i, y in zip(ids, labels)]
    return pd.DataFrame(rows)


def test_ensemble_of_averages_the_members_paired_per_split(bench, tmp_path, capsys):
    from sklearn.metrics import average_precision_score, roc_auc_score

    a = _proba(members=2)
    b = _proba(members=1, shift=-0.2).sample(frac=1.0, random_state=0)  # another row order
    b["member_0"] = b["member_0"] * (1 + (b["id"] == 12) * 3.0)  # b ranks stay 12 otherwise
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    res = bench.main(["--ensemble-of", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    out = capsys.readouterr().out
    table = pd.DataFrame(res["table"]).set_index("split_seed")
    assert res["names"] == ["a", "b"] and list(table.index) == [1, 2]
    assert (table["fits"] == 3).all()
    b = b.sort_values(["split_seed", "id"])
    for seed in (1, 2):
        pa, pb = a[a["split_seed"] == seed], b[b["split_seed"] == seed]
        y = pa["label"].to_numpy()
        # every fit weighs the same: (a's two members + b's one) / 3, computed by hand
        hand = (pa["member_0"].to_numpy() + pa["member_1"].to_numpy()
                + pb["member_0"].to_numpy()) / 3
        assert table.loc[seed, "ensemble_auc_roc"] == pytest.approx(roc_auc_score(y, hand))
        assert table.loc[seed, "ensemble_auc_pr"] == pytest.approx(
            average_precision_score(y, hand))
        assert table.loc[seed, "a_auc_roc"] == pytest.approx(
            roc_auc_score(y, (pa["member_0"] + pa["member_1"]) / 2))
        assert table.loc[seed, "b_auc_roc"] == pytest.approx(roc_auc_score(y, pb["member_0"]))
        assert table.loc[seed, "ensemble+boosting_auc_roc"] == pytest.approx(
            roc_auc_score(y, (hand + pa["boosting"].to_numpy()) / 2))
        assert table.loc[seed, "logistic_auc_roc"] == pytest.approx(
            roc_auc_score(y, pa["logistic"]))
    d = table["ensemble_auc_roc"] - table["b_auc_roc"]
    assert (f"ensemble - b: {d.iloc[0]:+.3f} / {d.iloc[1]:+.3f}; mean {d.mean():+.4f} "
            f"(standard error {d.std(ddof=1) / np.sqrt(2):.4f})") in out
    assert "ensemble+boosting - boosting" in out


@pytest.mark.parametrize("change, message", [
    (lambda f: f[f["split_seed"] == 1], "split 2 is in a only"),
    (lambda f: f.assign(id=f["id"] + (f["id"] == 13)), "split 1: b has other test stays"),
    (lambda f: f.assign(label=1 - f["label"]), "split 1: b labels the test stays otherwise"),
    (lambda f: f.assign(logistic=f["logistic"] + 0.1), "the logistic baseline differs"),
    (lambda f: f.drop(columns="member_0"), "b: not a --save-proba file"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "b: a stay appears twice in one split"),
])
def test_ensemble_of_refuses_unpaired_inputs(bench, change, message):
    with pytest.raises(ValueError, match=message):
        bench.pair_proba([_proba(), change(_proba())], ["a", "b"])


def test_point_prediction_of_a_saved_fit(bench, tmp_path):
    data = ["--data", str(tmp_path / "no-archive-here")]
    with torch_threads(torch.get_num_threads()):
        res = bench.main([*data, *TINY, "--save", str(tmp_path / "m.pt")])
        same = bench.main([*data, "--allow-sample", "--subset", "30", "--verbose", "0",
                           "--load", str(tmp_path / "m.pt"), "--point-prediction",
                           "posterior_mean"])
        pm = bench.main([*data, "--allow-sample", "--subset", "30", "--verbose", "0",
                         "--load", str(tmp_path / "m.pt"), "--point-prediction",
                         "predictive_mean"])
    assert res["model"]["point_prediction"] == "posterior_mean"
    assert pm["model"]["point_prediction"] == "predictive_mean"
    for a, b, c in zip(res["rows"], same["rows"], pm["rows"]):
        assert b["ours"] == pytest.approx(a["ours"], rel=1e-6)
        assert c["ours"] != pytest.approx(a["ours"], rel=1e-6)
        assert {k: v for k, v in c.items() if k not in ("ours", "eval_s")} == {
            k: v for k, v in a.items() if k not in ("ours", "eval_s")}  # the same baselines
