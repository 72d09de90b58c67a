"""The GRU-with-time-gaps baseline of ``benchmarks/spirals.py`` (``benchmarks/_rnn_baseline.py``).

Tiny sizes: a few spirals, a few epochs, one thread. The baseline must learn (its training
loss falls well below its first epoch's), be deterministic for a seed, read the time gaps,
extrapolate by feeding its predictions back, and put its predictions on the query's rows.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import load_script

from latentode.datasets import make_spirals

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SMALL = dict(hidden=8, head_units=8, epochs=12, lr=1e-2, batch_size=10, seed=0)


def _load(name: str, path: Path):
    return load_script(path, name)


@pytest.fixture(scope="module")
def rnn():
    return _load("spirals_rnn_baseline_under_test", BENCH / "_rnn_baseline.py")


@pytest.fixture(scope="module")
def bench():
    return _load("spirals_bench_under_test", BENCH / "spirals.py")


@pytest.fixture(scope="module")
def spirals():
    data = make_spirals(40, n_points=40, n_observed=15, noise=0.1, random_state=0, n_future=10,
                        n_total=200)
    obs, fut = data.observed, data.future
    return obs[obs["id"] < 30], obs[obs["id"] >= 30], fut[fut["id"] >= 30]


def test_loss_falls_and_a_seed_gives_identical_fits(rnn, spirals) -> None:
    train, test_obs, test_fut = spirals
    before = train.copy()
    threads = torch.get_num_threads()
    a = rnn.GapRNNForecaster(**SMALL).fit(train, value_cols=["x", "y"])
    b = rnn.GapRNNForecaster(**SMALL).fit(train, value_cols=["x", "y"])
    c = rnn.GapRNNForecaster(**{**SMALL, "seed": 1}).fit(train, value_cols=["x", "y"])
    assert torch.get_num_threads() == threads  # the caller's setting is restored
    pd.testing.assert_frame_equal(train, before)  # the caller's frame is not modified
    assert len(a.losses_) == SMALL["epochs"] and all(map(math.isfinite, a.losses_))
    assert a.losses_[-1] < 0.5 * a.losses_[0]
    assert a.losses_ == b.losses_ and a.losses_ != c.losses_
    for pa, pb in zip(a.model_.parameters(), b.model_.parameters()):
        assert torch.equal(pa, pb)
    query = test_fut[["id", "t"]]
    pa, pb = a.predict(test_obs, query), b.predict(test_obs, query)
    pd.testing.assert_frame_equal(pa, pb)
    assert not pa[["x", "y"]].equals(c.predict(test_obs, query)[["x", "y"]])
    # the standardisation was learnt from the training rows
    vals = train[["x", "y"]].to_numpy()
    np.testing.assert_allclose(a.model_.loc.numpy(), vals.mean(0), rtol=1e-5)
    gaps = train.groupby("id")["t"].diff().dropna()
    assert float(a.model_.gap_scale) == pytest.approx(gaps.mean(), rel=1e-5)


def test_predictions_land_on_the_query_rows(rnn, spirals) -> None:
    train, test_obs, test_fut = spirals
    model = rnn.GapRNNForecaster(**{**SMALL, "epochs": 2}).fit(train, value_cols=["x", "y"])
    # a shuffled query with its own index, and one series asked for fewer times than the rest
    query = test_fut[["id", "t"]].sample(frac=1.0, random_state=0)
    first = query["id"].iloc[0]
    drop = query.index[(query["id"] == first)][:4]
    query = query.drop(drop).set_index(pd.Index(np.arange(len(query) - 4) + 1000))
    pred = model.predict(test_obs, query)
    assert list(pred.columns) == ["id", "t", "x", "y"] and pred.index.equals(query.index)
    pd.testing.assert_frame_equal(pred[["id", "t"]], query)
    assert np.isfinite(pred[["x", "y"]].to_numpy()).all()
    # the same rows, asked in time order one series at a time, give the same values
    for sid, rows in query.groupby("id"):
        one = model.predict(test_obs[test_obs["id"] == sid], rows.sort_values("t"))
        np.testing.assert_allclose(one[["x", "y"]].to_numpy(),
                                   pred.loc[one.index, ["x", "y"]].to_numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_extrapolation_feeds_predictions_back_with_their_gaps(rnn) -> None:
    torch.manual_seed(0)
    model = rnn.GapGRU(2, hidden=5, head_units=4).eval()
    values = torch.randn(3, 6, 2)
    times = torch.cumsum(torch.rand(3, 6) + 0.1, dim=1)
    lengths = torch.tensor([6, 4, 1])
    future = times[torch.arange(3), lengths - 1][:, None] + torch.tensor([[0.3, 0.5, 0.6]])
    with torch.no_grad():
        got = model.extrapolate(values, times, lengths, future)
        assert got.shape == (3, 3, 2)
        # by hand: append each prediction as an observation and predict the next step
        for i in range(3):
            v, t = values[i, :lengths[i]], times[i, :lengths[i]]
            for k in range(3):
                nxt = torch.cat([t, future[i, k:k + 1]])
                step = model(torch.cat([v, v[-1:]])[None], nxt[None],
                             torch.tensor([len(nxt)]))[0, -1]
                pred = step * model.scale + model.loc
                torch.testing.assert_close(pred, got[i, k], rtol=1e-5, atol=1e-5)
                v, t = torch.cat([v, pred[None]]), nxt
        # the gaps are read: other future times give other predictions
        other = model.extrapolate(values, times, lengths, future + 0.4)
    assert not torch.allclose(other, got)


def test_bad_input_is_a_clear_error(rnn, spirals) -> None:
    train, test_obs, test_fut = spirals
    model = rnn.GapRNNForecaster(**{**SMALL, "epochs": 1})
    with pytest.raises(ValueError, match="not fitted"):
        model.predict(test_obs, test_fut)
    model.fit(train, value_cols=["x", "y"])
    inside = test_obs[["id", "t"]].iloc[:1]
    with pytest.raises(ValueError, match="only extrapolates"):
        model.predict(test_obs, inside)
    with pytest.raises(ValueError, match="no observations"):
        model.predict(test_obs, test_fut.assign(id=-5)[["id", "t"]])
    dup = pd.concat([train.iloc[:1], train])
    with pytest.raises(ValueError, match="same time"):
        rnn.GapRNNForecaster(**SMALL).fit(dup, value_cols=["x", "y"])


def test_benchmark_rnn_column(bench, capsys) -> None:
    res = bench.main(["--rnn-only", "--observed", "10", "--n-spirals", "30", "--n-train", "24",
                      "--rnn-param", "epochs=3", "--rnn-param", "hidden=6",
                      "--rnn-param", "head_units=6"])
    out = capsys.readouterr().out
    assert "| observed | latent ODE RMSE | covered futures | RNN | LOCF |" in out
    (row,) = res
    assert row["rmse"] is None and math.isfinite(row["rnn"]) and row["rnn"] > 0
    assert row["rnn_settings"]["epochs"] == 3 and row["rnn_settings"]["hidden"] == 6
    assert row["rnn_settings"]["lr"] == bench.RNN_DEFAULTS["lr"]
    assert row["rnn_fit_s"] > 0 and row["paper_rnn"] is None


def test_benchmark_help_still_works() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "spirals.py"), "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--rnn-only", "--no-rnn", "--rnn-param", "--rnn-tune", "--observed"):
        assert flag in proc.stdout


def test_tuning_picks_by_validation_of_the_training_spirals(bench, spirals, monkeypatch) -> None:
    train, _, _ = spirals
    base = {**SMALL, "epochs": 3}
    monkeypatch.setattr(bench, "RNN_GRID", [{}, {"epochs": 8}, {"lr": 1e-4, "epochs": 1}])
    val = {str(c): bench.rnn_validation_rmse(train, {**base, **c}) for c in bench.RNN_GRID}
    assert len(set(val.values())) == 3 and all(map(math.isfinite, val.values()))
    # the same split and seed give the same figure; another seed another split
    assert bench.rnn_validation_rmse(train, base) == val["{}"]
    assert bench.rnn_validation_rmse(train, base, seed=1) != val["{}"]
    for tol, expect in ((0.0, min(val, key=val.get)), (1e9, "{}")):
        monkeypatch.setattr(bench, "RNN_TUNE_TOL", tol)
        settings, rows = bench.tune_rnn(train, base, seed=0)
        assert [r["val_rmse"] for r in rows] == list(val.values())
        picked = next(str(c) for c in bench.RNN_GRID if {**base, **c} == settings)
        assert picked == expect


@pytest.mark.parametrize("posterior_time", ["first", "last"])
def test_benchmark_diagnosis_of_the_latent_ode(bench, capsys, tmp_path,
                                               posterior_time) -> None:
    res = bench.main(["--no-rnn", "--observed", "10", "--n-spirals", "12", "--n-train", "8",
                      "--epochs", "1", "--diagnose", "--model-seed", "5", "--param",
                      "latent_dim=2", "--param", "units=4", "--param", "rec_dim=4",
                      "--param", "n_layers=1", "--param", "gru_units=4", "--param",
                      "dynamics_activation='elu'", "--param",
                      f"posterior_time='{posterior_time}'", "--save",
                      str(tmp_path / "m.latentode")])
    (row,) = res
    out = capsys.readouterr().out
    assert "window RMSE (noise-free)" in out and "radius growth" in out
    # the groups of the geometry partition the test series and their RMSEs the future's
    geo = row["geometry"]
    assert geo["covered"]["n"] + geo.get("uncovered", {"n": 0})["n"] == 4
    mean_sq = sum(g["n"] * g["rmse"] ** 2 for k, g in geo.items() if k in ("covered",
                                                                             "uncovered")) / 4
    assert math.isclose(mean_sq, row["rmse"] ** 2, rel_tol=1e-9)
    from latentode import LatentODERegressor

    saved = LatentODERegressor.load(tmp_path / "m_10.latentode")
    assert saved.dynamics_activation == "elu" and row["params"]["dynamics_activation"] == "elu"
    # the latent path and field of that model over the same test series
    latent = load_script(BENCH / "spirals_latent.py", "spirals_latent_under_test")
    rep = latent.main([str(tmp_path / "m_10.latentode"), "--observed", "10", "--n-spirals",
                       "12", "--n-train", "8", "--samples", "5"])
    out = capsys.readouterr().out
    assert "|f(z)|" in out and "error decomposition" in out and "posterior spread" in out
    # the decomposition's future is what predict returns there; its groups are the geometry's
    dec = rep["decomposition"]
    assert dec["all"]["n"] == 4 and len(dec["all"]["per_step"]) == bench.N_FUTURE
    assert math.isclose(dec["all"]["future"], row["rmse"], rel_tol=1e-2)
    for name, g in geo.items():
        assert math.isclose(dec[name]["future"], g["rmse"], rel_tol=1e-2)
    spread = rep["spread"]["all"]
    assert spread["at_last"]["spread"] > 0 and spread["future"]["error"] > 0
    hist = rep["history"]
    assert hist["epochs"] == 1 and hist["best_epoch"] == 1 and hist["val_loss_drop"] is None
    # what predict returns there is what the benchmark scored, up to the adaptive solver's
    # tolerance (rtol 1e-3): the benchmark solves at the observed times, this at every step
    for name, g in geo.items():
        assert rep["predict (decoder and readout)"][name]["n"] == g["n"]
        assert math.isclose(rep["predict (decoder and readout)"][name]["rmse"], g["rmse"],
                            rel_tol=1e-2)
    cov = rep["groups"]["covered"]
    assert len(cov["|f(z)|"]) == len(latent.STEPS) and min(cov["|f(z)|"]) > 0
    assert "tanh layer 0 pinned" not in cov  # an ELU field has no tanh units
    assert math.isfinite(row["window_rmse"]) and row["window_rmse"] > 0
    assert len(row["rmse_by_tenth"]) == 10 and len(row["speed_ratio"]) == 3
    # the tenths partition the future: their mean square is the future's
    assert math.isclose(sum(d ** 2 for d in row["rmse_by_tenth"]) / 10, row["rmse"] ** 2,
                        rel_tol=1e-9)
    assert all(v > 0 for v in row["speed_ratio"])
    # --load scores the saved fit as it is, under each --point-rules rule: the default rule's
    # figure is the fit's own, the posterior mean's path another
    (again,) = bench.main(["--no-rnn", "--observed", "10", "--n-spirals", "12", "--n-train",
                           "8", "--load", str(tmp_path / "m.latentode"), "--point-rules",
                           "posterior_mean", "predictive_mean"])
    out = capsys.readouterr().out
    rules = again["point_rules"]
    assert set(rules) == {"posterior_mean", "predictive_mean"} and "covered futures" in out
    assert math.isclose(rules["predictive_mean"]["rmse"], row["rmse"], rel_tol=1e-6)
    assert again["rmse"] == rules["predictive_mean"]["rmse"]  # the table shows the last rule
    assert rules["posterior_mean"]["rmse"] != rules["predictive_mean"]["rmse"]
    with pytest.raises(SystemExit):
        bench.main(["--observed", "10", "--load", str(tmp_path / "m.latentode"), "--param",
                    "latent_dim=3"])


def test_benchmark_then_leg_continues_with_its_own_schedule(bench, capsys) -> None:
    """``--then``: the fit continues (warm start) with the leg's settings; the learning rate
    is constant over ``--epochs``, then restarts at ``lr`` and decays by ``lr_decay``."""
    tiny = ["--no-rnn", "--observed", "10", "--n-spirals", "12", "--n-train", "8",
            "--model-seed", "5", "--param", "latent_dim=2", "--param", "units=4",
            "--param", "rec_dim=4", "--param", "n_layers=1", "--param", "gru_units=4",
            "--param", "early_stopping=False"]
    (row,) = bench.main([*tiny, "--epochs", "2", "--then", "3", "--then-param",
                         "lr_decay=0.5"])
    assert row["epochs"] == 5 and 0 <= row["best_epoch"] < 5
    assert row["lr_by_epoch"] == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.0025])
    assert row["params"]["then"] == {"epochs": 3, "lr_decay": 0.5}
    (plain,) = bench.main([*tiny, "--epochs", "2"])
    assert plain["epochs"] == 2 and plain["lr_by_epoch"] == pytest.approx([0.01, 0.01])
    assert "then" not in plain["params"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.main([*tiny, "--then-param", "lr_decay=0.5"])


def test_future_geometry_measures_radius_and_angle(bench) -> None:
    """Ratios of a prediction's radius and angle to the truth's: 1 for the truth itself, 0
    radius growth for a circle, half the angle for half the angular speed."""
    s = np.linspace(0.0, 2.0, 50)
    centre = np.array(bench.CENTRES[True])

    def path(radius, angle):
        return centre + np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)

    truth = path(1.0 + s, -s)  # clockwise, the radius growing from 1 to 3
    preds = {"truth": path(1.0 + s, -s), "circle": path(np.ones_like(s), -s),
             "slow": path(1.0 + s, -0.5 * s)}
    got = bench.future_geometry(np.stack(list(preds.values())), np.stack([truth] * 3),
                                np.ones(3, bool), np.array([True, False, False]))
    assert set(got) == {"covered", "uncovered", "uncovered cw"}  # no counter-clockwise series
    cov = got["covered"]
    assert cov["n"] == 1 and cov["rmse"] == 0.0
    assert cov["radius_end"] == pytest.approx(1.0) and cov["radius_growth"] == pytest.approx(1.0)
    assert cov["angle"] == pytest.approx(1.0)
    circle = bench.future_geometry(preds["circle"][None], truth[None], np.ones(1, bool),
                                   np.zeros(1, bool))["uncovered"]
    assert circle["radius_growth"] == pytest.approx(0.0, abs=1e-12)
    assert circle["radius_end"] == pytest.approx(1.0 / 3.0)
    assert circle["angle"] == pytest.approx(1.0)
    slow = bench.future_geometry(preds["slow"][None], truth[None], np.ones(1, bool),
                                 np.zeros(1, bool))["uncovered"]
    assert slow["angle"] == pytest.approx(0.5) and slow["radius_growth"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def latent():
    return _load("spirals_latent_decomposition_under_test", BENCH / "spirals_latent.py")


def test_error_decomposition_splits_offset_and_flow(latent) -> None:
    """The future's error is the offset at the last observation carried along plus the
    displacement's error: a shifted copy of the truth is all offset, a path that starts right
    and drifts is all flow, and the squares add up with the cross term."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(3, 8, 2)).cumsum(axis=1)
    last = np.array([2, 3, 1])  # window of 4 steps, future of 4
    shifted = truth + np.array([0.3, -0.4])
    drift = truth + np.linspace(0.0, 1.0, 8)[None, :, None] * (np.arange(8) > 3)[None, :, None]
    groups = {"all": np.ones(3, bool), "first": np.array([True, False, False]),
              "none": np.zeros(3, bool)}
    got = latent.error_decomposition(shifted, truth, last, groups, 4)
    assert set(got) == {"all", "first"}
    a = got["all"]
    assert a["at_last"] == pytest.approx(0.5 / math.sqrt(2))  # |(0.3, -0.4)| = 0.5
    assert a["future"] == pytest.approx(a["offset"]) and a["flow"] == pytest.approx(0.0)
    assert a["per_step"] == pytest.approx([0.5 / math.sqrt(2)] * 4)
    b = latent.error_decomposition(drift, truth, last, groups, 4)["all"]
    assert b["at_last"] == 0.0 and b["offset"] == 0.0 and b["window_end"] == 0.0
    assert b["flow"] == pytest.approx(b["future"])
    assert b["per_step"] == pytest.approx(np.linspace(0.0, 1.0, 8)[4:])
    mixed = shifted + (drift - truth)
    m = latent.error_decomposition(mixed, truth, last, groups, 4)["all"]
    assert m["offset"] ** 2 + m["flow"] ** 2 + 2 * m["cross"] == pytest.approx(m["future"] ** 2)


def test_posterior_spread_against_the_error(latent) -> None:
    """Draws at +-s around a path that is off by e: spread s, error e, ratio s / e; their mean
    is the path itself."""
    truth = np.zeros((2, 6, 2))
    pred = truth + 0.2
    draws = np.stack([pred + 0.1, pred - 0.1])  # (K=2, B, T, 2): variance 0.01
    got = latent.posterior_spread(draws, pred, truth, np.array([1, 2]),
                                  {"all": np.ones(2, bool)}, 3)["all"]
    for part in ("at_last", "future"):
        assert got[part]["spread"] == pytest.approx(0.1)
        assert got[part]["error"] == pytest.approx(0.2)
        assert got[part]["ratio"] == pytest.approx(0.5)
        assert got[part]["mean_of_draws"] == pytest.approx(0.2)


def test_history_summary_says_whether_the_losses_still_fall(latent) -> None:
    from latentode.training.history import History

    hist = History(best_epoch=39)
    for e in range(40):
        hist.append({"train_loss": 10.0 - 0.1 * e, "val_loss": 5.0, "val_mse": None})
    got = latent.history_summary(hist, last=10)
    assert got["epochs"] == 40 and got["best_epoch"] == 40
    assert got["train_loss_drop"] == pytest.approx(1.0)  # ten epochs of 0.1
    assert got["val_loss_drop"] == pytest.approx(0.0) and got["train_loss_best"] == 6.1
    assert math.isnan(got["val_mse_best"]) and got["val_mse_drop"] is None
    assert latent.history_summary(hist, last=30)["train_loss_drop"] is None


@pytest.mark.parametrize(("path", "expect"), [
    ("/tmp/m.latentode", "/tmp/m_100.latentode"),
    ("/tmp/cos100_s1", "/tmp/cos100_s1_100"),
    ("./m", "./m_100"),  # formerly "_100./m"
    ("/tmp/run.v2/m", "/tmp/run.v2/m_100"),  # formerly "/tmp/run_100.v2/m"
    ("/tmp/run.v2/m.png", "/tmp/run.v2/m_100.png"),
])
def test_per_count_moves_only_the_file_names_extension(bench, path, expect) -> None:
    """``--save`` / ``--load`` / ``--plot`` name one file per observed count."""
    assert bench._per_count(path, 100) == expect
