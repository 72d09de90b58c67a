"""``benchmarks/calibration.py --suite --test-draws R --extra-test N``: a more precise
measurement of the same fitted model (several hidings of the test values, more test series),
which leaves the single-draw figures of before unchanged."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import BENCHMARKS, load_script
from scipy.stats import norm

from latentode.evaluation import coverage, hide_values
from latentode.uncertainty import quantile_label
from latentode.utils import torch_threads

TINY = ["--param", "latent_dim=3", "--param", "rec_dim=6", "--param", "units=8", "--param",
        "n_layers=1", "--param", "gru_units=8", "--param", "encoder='gru'", "--epochs", "1"]


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCHMARKS / "calibration.py")


def _run(bench, *argv):
    with torch_threads(torch.get_num_threads()), contextlib.redirect_stdout(io.StringIO()):
        return bench.main(["--suite", "walk", *TINY, *argv])


#: the runs of :func:`many`: three hidings of the test values, six more test series
MANY = ("--test-draws", "3", "--extra-test", "6")


@pytest.fixture(scope="module")
def one(bench) -> pd.DataFrame:
    """The suite's plain run (one draw), shared by the tests that only read it."""
    return _run(bench)


@pytest.fixture(scope="module")
def many(bench) -> pd.DataFrame:
    """The same fit measured with :data:`MANY`, shared by the tests that only read it."""
    return _run(bench, *MANY)


def test_draws_and_extra_series_leave_the_single_draw_figures_unchanged(one, many) -> None:
    assert not [c for c in one.columns if c.endswith((" mean", " se", " sd"))]
    same = [c for c in one.columns if c != "fit s"]
    pd.testing.assert_frame_equal(one[same], many[same])  # same fit, same single draw
    row = many.loc["walk"]
    assert row["n test"] == 50 + 6
    for task in ("interp", "extrap"):
        for level in (50, 90):
            assert 0.0 < row[f"{task} {level} mean"] < 100.0
            assert 0.0 < row[f"{task} {level} se"] < 10.0
    assert row["interp 50 sd"] > 0.0  # the three hidings differ
    assert row["met mean"] in (0.0, 1.0)


def test_hidden_draws_differ_and_the_first_is_the_suite_draw(bench) -> None:
    test = bench.make_case(bench.SUITE["walk"], 0).query("id < 20")
    draws = bench.hidden_draws(test, 0.3, ["x0"], seed=4, draws=3)
    cond0, hidden0 = hide_values(test, 0.3, columns=["x0"], random_state=4 + 2)
    pd.testing.assert_frame_equal(draws[0][0], cond0)
    np.testing.assert_array_equal(draws[0][1], hidden0)
    masks = [h for _, h in draws]
    for i in range(3):
        assert 0.2 < masks[i].sum() / test["x0"].notna().sum() < 0.4
        for j in range(i):
            assert (masks[i] != masks[j]).mean() > 0.2


def test_extra_test_series_are_new_series_of_the_same_process(bench) -> None:
    case = bench.SUITE["osc-sparse"]
    df = bench.make_case(case, 1)
    extra = bench.extra_test_series(case, 1, 30, first_id=int(df["id"].max()) + 1)
    assert extra["id"].nunique() == 30 and extra["id"].min() == df["id"].max() + 1
    assert list(extra.columns) == list(df.columns)
    # the suite's data are untouched and the new series are not copies of them
    pd.testing.assert_frame_equal(df, bench.make_case(case, 1))
    assert not np.isin(extra["x0"].dropna().to_numpy(), df["x0"].dropna().to_numpy()).any()
    # the same process: 15 points on [0, 12], amplitude of the same order
    assert extra.groupby("id").size().max() <= 15
    assert extra["t"].between(0.0, 12.0).all()
    assert abs(extra["x0"].std() / df["x0"].std() - 1.0) < 0.2
    physio = bench.SUITE["physionet"]
    assert bench.extra_test_series(physio, 1, 30, first_id=10**6).empty


def test_clustered_coverage_by_hand(bench) -> None:
    ids = np.array([1, 1, 2, 3, 3])
    scored = np.array([[True], [True], [True], [True], [False]])
    inside = np.array([[True], [False], [True], [False], [True]])  # unscored entry ignored
    cov, se = bench.clustered_coverage(ids, inside & scored, scored)
    # series (c, n): (1, 2), (1, 1), (0, 1); p = 2 / 4
    resid = np.array([1 - 0.5 * 2, 1 - 0.5, 0 - 0.5])
    assert cov == pytest.approx(50.0)
    assert se == pytest.approx(100 * np.sqrt(3 / 2 * np.sum(resid**2)) / 4)


class _Gaussian:
    """A stand-in fitted model: every value is N(0, 1) and its predicted quantiles are those
    of N(0, width**2) (width 1: a calibrated model)."""

    def __init__(self, width: float) -> None:
        self.width = width

    def _quantiles(self, n: int, quantiles) -> pd.DataFrame:
        return pd.DataFrame({f"x0_{quantile_label(q)}": np.full(n, self.width * norm.ppf(q))
                             for q in quantiles})

    def predict(self, cond, quantiles, n_samples):
        return self._quantiles(len(cond), quantiles)

    def extrapolate(self, past, times, quantiles, n_samples):
        return self._quantiles(len(times), quantiles)


def _gaussian_series(n_series: int, n_points: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.repeat(np.arange(n_series), n_points),
                         "t": np.tile(np.linspace(0.0, 10.0, n_points), n_series),
                         "x0": rng.standard_normal(n_series * n_points)})


def test_precise_coverage_finds_a_calibrated_model_and_a_narrow_one(bench) -> None:
    test = _gaussian_series(200, 20, seed=0)
    q = (0.05, 0.25, 0.75, 0.95)
    good = bench.precise_coverage(_Gaussian(1.0), test, ["x0"], 6.0, 0.3, 0, 5, q, 10)
    narrow = bench.precise_coverage(_Gaussian(0.8), test, ["x0"], 6.0, 0.3, 0, 5, q, 10)
    n_values = 200 * 19  # hideable values (each series keeps its first row)
    k_mean, k_square = 5 * 0.3, 5 * 0.3 * 0.7 + (5 * 0.3) ** 2  # draws that hide one value
    for level in (50, 90):
        p = level / 100
        # independent values, each counted in the k of the five draws that hide it: the
        # error of the pooled coverage is p (1 - p) E[k^2] / (E[k]^2 n_values), not the
        # binomial error of all the hidden values (the draws reuse the same test values)
        expected = 100 * np.sqrt(p * (1 - p) * k_square / (k_mean**2 * n_values))
        assert good[f"interp {level} se"] == pytest.approx(expected, rel=0.15)
        assert good[f"interp {level} se"] > 1.3 * 100 * np.sqrt(p * (1 - p) / (5 * 0.3 * n_values))
        assert abs(good[f"interp {level} mean"] - level) < 3 * good[f"interp {level} se"]
        assert abs(good[f"extrap {level} mean"] - level) < 3 * good[f"extrap {level} se"]
        # the true coverage of intervals 0.8 as wide (50 %: 41.6, 90 %: 81.2) is found
        true = 100 * (2 * norm.cdf(0.8 * norm.ppf(0.5 + p / 2)) - 1)
        assert abs(narrow[f"interp {level} mean"] - true) < 3 * narrow[f"interp {level} se"]
    assert good["met mean"] == 1.0 and narrow["met mean"] == 0.0
    assert good["n test"] == 200
    # one draw's coverage is what `coverage` gives for that hiding
    cond, hidden = bench.hidden_draws(test, 0.3, ["x0"], 0, 1)[0]
    pred = _Gaussian(1.0).predict(cond, q, 10)
    one = bench.precise_coverage(_Gaussian(1.0), test, ["x0"], 6.0, 0.3, 0, 1, q, 10)
    assert one["interp 50 mean"] == pytest.approx(
        100 * coverage(test, pred, 0.5, hidden, columns=["x0"]))
    assert np.isnan(one["interp 50 sd"])


def test_truncated_copies_share_their_original_group(bench) -> None:
    train = pd.DataFrame({"id": np.repeat([3, 5, 8], 10), "t": np.tile(np.arange(10.0), 3),
                          "x": np.arange(30.0)})
    plain = bench._with_prefixes(train, 2, (0.0, 10.0), 0)
    grouped = bench._with_prefixes(train, 2, (0.0, 10.0), 0, "group")
    # the same series; the group of each copy is its original's id
    pd.testing.assert_frame_equal(plain, grouped.drop(columns="group"))
    assert grouped["id"].nunique() == 9
    assert (grouped.groupby("id")["group"].nunique() == 1).all()
    assert grouped.groupby("group")["id"].nunique().to_dict() == {3: 3, 5: 3, 8: 3}
    copies = grouped[grouped["id"] > 8]
    assert (copies["x"].to_numpy() == train.set_index(["id", "t"]).loc[
        list(zip(copies["group"], copies["t"])), "x"].to_numpy()).all()
    args = bench.argparse.Namespace(grouped_validation=False)
    assert bench._group_col(args) is None
    args.grouped_validation = True
    assert bench._group_col(args) == "group"


def test_the_suite_scores_the_baselines_on_the_same_points(one) -> None:
    table = one
    row = table.loc["walk"]
    mse = {c: row[c] for c in table.columns if "MSE" in c}
    assert set(mse) == {"interp MSE", "interp linear MSE", "interp LOCF MSE", "interp mean MSE",
                        "extrap MSE", "extrap LOCF MSE", "extrap mean MSE"}
    assert all(np.isfinite(v) and v > 0 for v in mse.values())
    # a random walk: the neighbours beat the series' mean on hidden values and forecasts
    assert row["interp linear MSE"] < row["interp mean MSE"]
    assert row["extrap LOCF MSE"] < row["extrap mean MSE"]


def test_clean_validation_splits_the_originals_before_the_copies(bench) -> None:
    train = pd.DataFrame({"id": np.repeat(np.arange(40), 10), "t": np.tile(np.arange(10.0), 40),
                          "x": np.arange(400.0)})
    args = bench.argparse.Namespace(validation="clean", grouped_validation=False, prefixes=1,
                                    seed=2, param=[], latent_dim=3, solver="rk4", epochs=1,
                                    patience=5, threads=1, verbose=0, obs_dropout=0.0)
    fit_train, kw = bench._fit_data(args, train, (0.0, 10.0))
    assert list(kw) == ["validation_data"]
    val = kw["validation_data"]
    held = set(val["id"])
    assert len(held) == 4  # the estimator's validation_fraction (0.1) of the 40 originals
    pd.testing.assert_frame_equal(val, train[train["id"].isin(held)])  # whole originals
    originals = fit_train[fit_train["id"] < 40]
    assert set(originals["id"]) == set(range(40)) - held
    # the copies are of the training originals only: their values are none of the held ones'
    copies = fit_train[fit_train["id"] >= 40]
    assert copies["id"].nunique() == 36
    assert not np.isin(copies["x"], val["x"]).any()
    # the other protocols: the copies of every series, the estimator's own split
    args.validation = "pooled"
    pooled, kw = bench._fit_data(args, train, (0.0, 10.0))
    assert kw == {"group_col": None} and pooled["id"].nunique() == 80
    args.grouped_validation = True
    grouped, kw = bench._fit_data(args, train, (0.0, 10.0))
    assert kw == {"group_col": "group"} and grouped["group"].nunique() == 40
    # a namespace without --validation (a diagnostic script's) keeps the former protocol
    assert bench._validation(bench.argparse.Namespace()) == "pooled"


def test_recalibrate_series_add_the_recalibrated_model_beside_the_fit(bench, many) -> None:
    """``--recalibrate-series N``: the same fit, recalibrated on N new series of the process;
    the fit's own columns unchanged, the recalibrated model's coverage beside them."""
    recal = _run(bench, *MANY, "--recalibrate-series", "30")
    same = [c for c in many.columns if c != "fit s"]
    pd.testing.assert_frame_equal(many[same], recal[same])
    row = recal.loc["walk"]
    for task in ("interp", "extrap"):
        for level in (50, 90):
            for stat in ("", "mean ", "se "):
                assert 0.0 < row[f"{task} {level} {stat}recal"] < 100.0
    assert row["met recal"] in (0.0, 1.0) and row["met mean recal"] in (0.0, 1.0)
    assert row["interp 50 recal"] != row["interp 50"]  # another level
    case = bench.SUITE["walk"]
    fresh = bench.extra_test_series(case, 0, 30, first_id=0, offset=bench.RECALIBRATE_SEED)
    extra = bench.extra_test_series(case, 0, 30, first_id=0)
    assert not np.isin(fresh["x0"].dropna(), extra["x0"].dropna()).any()
