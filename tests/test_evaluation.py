"""``latentode.evaluation``: hiding values, naive baselines and scores, with exact values.

The demo, ``benchmarks/physionet.py``, ``benchmarks/calibration.py`` and tutorial 02 compute their
baselines and scores with these functions; the hand examples below fix their values.
"""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest

from latentode import evaluation as ev
from latentode.evaluation import (
    channel_mean,
    coverage,
    gap_breakdown,
    hide_values,
    linear_interpolation,
    locf,
    long_to_dense,
    mse,
    paper_mse,
    paper_mse_frame,
    paper_mse_shares,
    per_feature_mse,
    sample_crps,
)

NAN = np.nan


def _frame() -> pd.DataFrame:
    """Two stays, two features; stay 1 has a gap in ``a`` and a single ``b``."""
    return pd.DataFrame({
        "id": [1, 1, 1, 2, 2],
        "t": [0.0, 1.0, 3.0, 0.0, 2.0],
        "a": [1.0, NAN, 5.0, NAN, 2.0],
        "b": [NAN, 4.0, NAN, NAN, NAN],
    })


@pytest.mark.parametrize("module", ["latentode.evaluation", "latentode.evaluation.masking",
                                    "latentode.evaluation.baselines",
                                    "latentode.evaluation.metrics",
                                    "latentode.evaluation.breakdown",
                                    "latentode.evaluation.scoring"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_public_names() -> None:
    assert sorted(ev.__all__) == sorted(set(ev.__all__))
    for name in ev.__all__:
        assert callable(getattr(ev, name)), name
    from latentode import uncertainty
    from latentode.datasets import paper_mse as from_datasets

    assert ev.crps_samples is uncertainty.crps_samples  # reused, not duplicated
    assert ev.interval_coverage is uncertainty.interval_coverage
    assert from_datasets is paper_mse  # its former home re-exports it


# ---------------------------------------------------------------------------------------------
# hide_values
# ---------------------------------------------------------------------------------------------
def test_hide_keeps_first_rows_and_the_input() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    df = pd.DataFrame({"id": np.repeat(np.arange(40), 100), "t": np.tile(np.arange(100.0), 40),
                       "a": rng.normal(size=n), "b": np.where(rng.random(n) < 0.5, 1.0, NAN)})
    before = df.copy()
    cond, hidden = hide_values(df, 0.5, columns=["a", "b"], random_state=3)
    observed = df[["a", "b"]].notna().to_numpy()
    assert not (hidden & ~observed).any()  # only observed values are hidden
    first = ~df.duplicated("id").to_numpy()
    assert not hidden[first].any()
    assert abs(hidden.sum() / observed.sum() - 0.5) < 0.03
    assert cond[["a", "b"]].isna().to_numpy()[hidden].all()
    np.testing.assert_array_equal(cond[["a", "b"]].to_numpy()[~hidden & observed],
                                  df[["a", "b"]].to_numpy()[~hidden & observed])
    pd.testing.assert_frame_equal(df, before)
    # the same draws as the benchmarks' protocol: one uniform per entry, row-major
    u = np.random.default_rng(3).random(observed.shape)
    expected = observed & (u < 0.5)
    expected[first] = False
    np.testing.assert_array_equal(hidden, expected)


def test_hide_exact_small_case() -> None:
    df = _frame()
    cond, hidden = hide_values(df, 1.0)  # default columns: all but id and t
    # stay 2's first row observes nothing: its first observed row (row 4) is kept instead
    assert hidden.tolist() == [[False, False], [False, True], [True, False], [False, False],
                               [False, False]]
    np.testing.assert_array_equal(cond["a"].to_numpy(), [1.0, NAN, NAN, NAN, 2.0])
    np.testing.assert_array_equal(cond["b"].to_numpy(), [NAN, NAN, NAN, NAN, NAN])
    cond, hidden = hide_values(df, 1.0, keep_first=False)
    assert hidden.sum() == df[["a", "b"]].notna().to_numpy().sum() == 4
    _, none = hide_values(df, 0.0, random_state=1)
    assert not none.any()
    gen = np.random.default_rng(5)
    _, h1 = hide_values(df, 0.5, random_state=gen)
    _, h2 = hide_values(df, 0.5, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(h1, h2)


def test_hide_errors() -> None:
    df = _frame()
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        hide_values(df, 1.5)
    with pytest.raises(ValueError, match="column 'c' is not in df"):
        hide_values(df, 0.5, columns=["a", "c"])
    with pytest.raises(ValueError, match="id column 'sid' is not in df"):
        hide_values(df, 0.5, id_col="sid")
    with pytest.raises(ValueError, match="id column 'id' of df is missing at row 2"):
        hide_values(df.assign(id=[1, 1, None, 2, 2]), 0.5)
    with pytest.raises(TypeError, match="DataFrame"):
        hide_values(df.to_numpy(), 0.5)


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------
def test_linear_and_locf_baselines() -> None:
    df = _frame()
    before = df.copy()
    fallback = pd.Series({"a": 9.0, "b": 7.0})
    lin = linear_interpolation(df, columns=["a", "b"], fallback=fallback)
    # stay 1: a(1) = 1 + (5 - 1) / 3; b constant beyond its only value
    np.testing.assert_allclose(lin["a"], [1.0, 1.0 + 4.0 / 3.0, 5.0, 2.0, 2.0])
    np.testing.assert_allclose(lin["b"], [4.0, 4.0, 4.0, 7.0, 7.0])  # stay 2: no b -> fallback
    lo = locf(df, columns=["a", "b"], fallback=fallback)
    np.testing.assert_allclose(lo["a"], [1.0, 1.0, 5.0, 2.0, 2.0])  # first value carried back
    np.testing.assert_allclose(lo["b"], [4.0, 4.0, 4.0, 7.0, 7.0])
    me = channel_mean(df, columns=["a", "b"], fallback=fallback)
    np.testing.assert_allclose(me["a"], [1.0, 3.0, 5.0, 2.0, 2.0])
    np.testing.assert_allclose(me["b"], [4.0, 4.0, 4.0, 7.0, 7.0])
    for out in (lin, lo, me):
        assert list(out.columns) == ["id", "t", "a", "b"]
        pd.testing.assert_index_equal(out.index, df.index)
        pd.testing.assert_frame_equal(out[["id", "t"]], df[["id", "t"]])
    pd.testing.assert_frame_equal(df, before)
    # without a fallback a stay without a value stays NaN
    assert np.isnan(locf(df)["b"].to_numpy()[3:]).all()
    assert np.isnan(linear_interpolation(df, fallback={"a": 0.0, "b": NAN})["b"][3:]).all()


def test_baselines_at_query_rows() -> None:
    past = _frame()
    query = pd.DataFrame({"id": [2, 1, 1, 3, 1], "t": [5.0, 2.0, 9.0, 1.0, -1.0]},
                         index=[10, 11, 12, 13, 14])
    lo = locf(past, query, fallback=0.0)
    assert lo.index.tolist() == [10, 11, 12, 13, 14]
    assert lo["a"].tolist() == [2.0, 1.0, 5.0, 0.0, 1.0]  # t=2 in stay 1: last value is a(0)
    assert lo["b"].tolist() == [0.0, 4.0, 4.0, 0.0, 4.0]
    lin = linear_interpolation(past, query)
    np.testing.assert_allclose(lin["a"], [2.0, 1.0 + 4.0 * 2.0 / 3.0, 5.0, NAN, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(lin["b"], [NAN, 4.0, 4.0, NAN, 4.0])
    me = channel_mean(past, query)
    np.testing.assert_array_equal(me["a"], [2.0, 3.0, 3.0, NAN, 3.0])
    np.testing.assert_array_equal(me["b"], [NAN, 4.0, 4.0, NAN, 4.0])
    # channel_mean needs no time column in the query
    assert channel_mean(past, query[["id"]])["a"].tolist()[:3] == [2.0, 3.0, 3.0]


def test_baselines_follow_time_not_row_order() -> None:
    df = pd.DataFrame({"id": ["s", "u", "s", "s", "u"], "t": [3.0, 0.0, 0.0, 1.0, 2.0],
                       "x": [6.0, 1.0, 0.0, NAN, NAN]})
    # stay "s" in time order: x(0) = 0, x(1) = ?, x(3) = 6; stay "u": x(0) = 1, x(2) = ?
    np.testing.assert_array_equal(linear_interpolation(df)["x"], [6.0, 1.0, 0.0, 2.0, 1.0])
    np.testing.assert_array_equal(locf(df)["x"], [6.0, 1.0, 0.0, 0.0, 1.0])
    # ties: the later row wins
    tie = pd.DataFrame({"id": [1, 1, 1], "t": [0.0, 0.0, 1.0], "x": [1.0, 2.0, NAN]})
    assert locf(tie)["x"].tolist() == [1.0, 2.0, 2.0]


def test_baselines_with_datetimes() -> None:
    t0 = pd.Timestamp("2024-03-01 00:00")
    obs = pd.DataFrame({"id": [1, 1, 1], "t": t0 + pd.to_timedelta([0, 1, 4], unit="h"),
                        "x": [0.0, NAN, 8.0]})
    assert linear_interpolation(obs)["x"].tolist() == [0.0, 2.0, 8.0]
    query = pd.DataFrame({"id": [1, 1], "t": t0 + pd.to_timedelta([3, 30], unit="h")})
    assert linear_interpolation(obs, query)["x"].tolist() == [6.0, 8.0]
    assert locf(obs, query)["x"].tolist() == [0.0, 8.0]
    aware = obs.assign(t=obs["t"].dt.tz_localize("Europe/Berlin"))
    q_aware = query.assign(t=query["t"].dt.tz_localize("Europe/Berlin"))
    assert linear_interpolation(aware, q_aware)["x"].tolist() == [6.0, 8.0]
    deltas = obs.assign(t=obs["t"] - t0)
    assert linear_interpolation(deltas, query.assign(t=query["t"] - t0))["x"].tolist() == [6.0,
                                                                                          8.0]
    with pytest.raises(ValueError, match="time column 't' has dtype"):
        linear_interpolation(obs, query.assign(t=[3.0, 30.0]))
    with pytest.raises(ValueError, match="time column 't' has dtype"):
        locf(aware, query)


def test_baseline_errors() -> None:
    df = _frame()
    with pytest.raises(ValueError, match="fallback has no value for column 'b'"):
        locf(df, fallback={"a": 0.0})
    with pytest.raises(ValueError, match="fallback must be a number"):
        locf(df, fallback=[0.0, 1.0])
    with pytest.raises(ValueError, match="time column 't' of observed is missing at row 1"):
        linear_interpolation(df.assign(t=[0.0, NAN, 3.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="time column 't' is not in query"):
        locf(df, df[["id"]])
    with pytest.raises(ValueError, match="column 'a' of observed must be numeric"):
        locf(df.assign(a=list("vwxyz")))
    with pytest.raises(ValueError, match="is the id or time column"):
        channel_mean(df, columns=["t"])
    with pytest.raises(ValueError, match="listed twice"):
        channel_mean(df, columns=["a", "a"])


# ---------------------------------------------------------------------------------------------
# MSE
# ---------------------------------------------------------------------------------------------
def test_mse_and_per_feature_mse_exact() -> None:
    truth = _frame()
    pred = pd.DataFrame({"a": [0.0, 9.0, 3.0, 9.0, 1.0], "b": [9.0, 2.0, 9.0, 9.0, 9.0]})
    # scored (observed): a at rows 0, 2, 4 -> 1, 4, 1; b at row 1 -> 4
    assert mse(truth, pred) == 2.5
    assert per_feature_mse(truth, pred).to_dict() == {"a": 2.0, "b": 4.0}
    mask = np.array([[True, False], [False, False], [True, False], [False, False],
                     [False, False]])
    assert mse(truth, pred, mask) == 2.5
    feat = per_feature_mse(truth, pred, mask)
    assert feat["a"] == 2.5 and np.isnan(feat["b"])
    # standardised: (x - loc) / scale for truth and prediction
    assert mse(truth, pred, loc={"a": 100.0, "b": -3.0}, scale={"a": 2.0, "b": 4.0}) == (
        (0.25 + 1.0 + 0.25 + 0.25) / 4)
    assert per_feature_mse(truth, pred.to_numpy(), scale=2.0).to_dict() == {"a": 0.5, "b": 1.0}
    assert mse(truth, pred, columns=["b"]) == 4.0
    assert np.isnan(mse(truth, pred, np.zeros((5, 2), dtype=bool)))


def test_metrics_refuse_unobserved_or_missing_entries() -> None:
    truth = _frame()
    pred = pd.DataFrame({"a": [0.0, 9.0, NAN, 9.0, 1.0], "b": 1.0})
    with pytest.raises(ValueError, match="not finite at a scored entry: column 'a', row 2"):
        mse(truth, pred)
    assert mse(truth, pred, columns=["b"]) == 9.0  # NaN outside the scored entries is fine
    with pytest.raises(ValueError, match="does not observe: column 'b', row 0"):
        mse(truth, pred.fillna(0.0), np.ones((5, 2), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        mse(truth, pred.to_numpy()[:3])
    with pytest.raises(ValueError, match="y_pred has no column 'b'"):
        mse(truth, pred[["a"]])
    with pytest.raises(ValueError, match="mask must have shape"):
        mse(truth, pred, np.ones((5, 3), dtype=bool))
    with pytest.raises(ValueError, match="scale must be finite and > 0; column 'b'"):
        mse(truth, pred.fillna(0.0), scale={"a": 1.0, "b": 0.0})


# ---------------------------------------------------------------------------------------------
# The paper's MSE and its per-feature breakdown
# ---------------------------------------------------------------------------------------------
def test_paper_mse_hand_example() -> None:
    # 2 series, 3 times, 2 features
    y = np.array([
        [[0.0, 1.0], [1.0, NAN], [2.0, NAN]],
        [[NAN, NAN], [0.5, NAN], [NAN, NAN]],
    ])  # fmt: skip
    p = np.array([
        [[1.0, 0.0], [1.0, 5.0], [0.0, 5.0]],
        [[9.0, 9.0], [0.0, 9.0], [9.0, 9.0]],
    ])  # fmt: skip
    # series 0: feature 0 (1 + 0 + 4) / 3 = 5/3, feature 1: 1 -> (5/3 + 1) / 2 = 4/3
    # series 1: feature 0: 0.25, feature 1 unobserved -> 0 (paper) -> 0.125; mean = 0.7291...
    assert paper_mse(y, p) == pytest.approx((4 / 3 + 0.125) / 2)
    # skipping unobserved features: series 1 -> 0.25
    assert paper_mse(y, p, empty="skip") == pytest.approx((4 / 3 + 0.25) / 2)
    mask = ~np.isnan(y)
    assert paper_mse(np.nan_to_num(y), p, mask) == pytest.approx((4 / 3 + 0.125) / 2)
    # samples axis: mean of per-sample MSEs
    samples = np.stack([p, np.nan_to_num(y)])  # second sample is perfect
    assert paper_mse(y, samples) == pytest.approx((4 / 3 + 0.125) / 4)
    assert paper_mse(y[0], p[0]) == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="shape"):
        paper_mse(y, p[:, :2])


def test_feature_shares_add_up_to_the_score() -> None:
    df = _frame()
    mask = df[["a", "b"]].notna().to_numpy()
    pred = np.zeros((len(df), 2))
    shares = paper_mse_shares(df, pred, mask, columns=["a", "b"])
    # a: stay 1 (1 + 25) / 2 = 13, stay 2 4 -> mean 8.5, / 2 features; b: stay 1 16, stay 2 0
    assert shares["a"] == pytest.approx(8.5 / 2)
    assert shares["b"] == pytest.approx(8.0 / 2)
    assert shares.sum() == pytest.approx(paper_mse_frame(df, pred, mask, columns=["a", "b"]))
    # per stay: (13 + 16) / 2 and (4 + 0) / 2 -> mean 8.25
    assert paper_mse_frame(df, pred) == 8.25
    assert paper_mse_frame(df, pred, empty="skip") == (14.5 + 4.0) / 2


def test_paper_mse_frame_matches_the_array_metric() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"id": np.repeat([5, 3, 8], [4, 2, 3]), "t": np.arange(9.0),
                       "a": rng.normal(size=9), "b": np.where(rng.random(9) < 0.5, 1.0, NAN)})
    pred = rng.normal(size=(9, 2))
    dense_y = long_to_dense(df)
    assert dense_y.shape == (3, 4, 2)
    np.testing.assert_array_equal(dense_y[1, :2], df[["a", "b"]].to_numpy()[4:6])
    assert np.isnan(dense_y[1, 2:]).all()
    expected = paper_mse(dense_y, np.nan_to_num(long_to_dense(df, pred, columns=["a", "b"])))
    assert paper_mse_frame(df, pred) == pytest.approx(expected, rel=1e-15)
    with pytest.raises(ValueError, match="not finite at a scored entry"):
        paper_mse_frame(df, np.full((9, 2), NAN))


# ---------------------------------------------------------------------------------------------
# CRPS and coverage
# ---------------------------------------------------------------------------------------------
def test_sample_crps_exact_and_frame_layout() -> None:
    y = pd.DataFrame({"id": [1, 1], "t": [0.0, 1.0], "x": [0.0, 3.0], "w": [NAN, 1.0]})
    draws = np.array([[[-1.0, 5.0], [2.0, 0.0]],
                      [[1.0, 5.0], [4.0, 2.0]]])  # (S=2, rows, columns)
    # x: row 0 -> 1 - 1/2 = 0.5, row 1 -> 1 - 1/2 = 0.5; w: row 1 -> 1 - 1/2 = 0.5
    assert sample_crps(y, draws) == 0.5
    assert sample_crps(y, draws, columns=["x", "w"]) == 0.5
    draws[1, 1, 1] = 1.0  # w: samples {0, 1} for y = 1 -> 0.5 - 0.25 = 0.25
    assert sample_crps(y, draws) == pytest.approx((0.5 + 0.5 + 0.25) / 3, rel=1e-15)
    # the frame that LatentODERegressor.sample returns: sample-major blocks of y's rows
    frame = pd.concat([pd.DataFrame({"sample": s, "id": y["id"], "t": y["t"], "x": draws[s, :, 0],
                                     "w": draws[s, :, 1]}) for s in range(2)], ignore_index=True)
    assert sample_crps(y, frame) == sample_crps(y, draws)
    with pytest.raises(ValueError, match="ordered by 'sample'"):
        sample_crps(y, frame.iloc[[0, 2, 1, 3]])
    with pytest.raises(ValueError, match="'id' differs at row 1"):
        sample_crps(y, frame.assign(id=[1, 2, 1, 2]))
    with pytest.raises(ValueError, match="n_samples \\* 2 rows"):
        sample_crps(y, frame.iloc[:3])
    with pytest.raises(ValueError, match="not finite at a scored entry: column 'x', row 1"):
        sample_crps(y, np.where(np.arange(2)[None, :, None] == 1, NAN, draws))


def test_coverage_exact() -> None:
    y = pd.DataFrame({"id": [1, 1, 1], "t": [0.0, 1.0, 2.0], "x": [0.0, 1.0, 5.0]})
    pred = pd.DataFrame({"x": 0.0, "x_q0.25": [-1.0, -1.0, -1.0], "x_q0.75": [1.0, 1.0, 1.0],
                         "x_q0.05": [-9.0] * 3, "x_q0.95": [9.0] * 3})
    assert coverage(y, pred, 0.5) == pytest.approx(2 / 3)  # bounds included
    assert coverage(y, pred, 0.9) == 1.0
    assert coverage(y, pred, 0.5, np.array([[False], [False], [True]])) == 0.0
    with pytest.raises(ValueError, match=r"no column 'x_q0.1'.*central_interval\(0.8\)"):
        coverage(y, pred, 0.8)
    with pytest.raises(ValueError, match="level must lie in"):
        coverage(y, pred, 1.0)


def test_scores_of_a_fitted_estimator() -> None:
    """The estimator's outputs plug in: quantile columns, sample frames, prediction frames."""
    from _settings import TINY

    from latentode import LatentODERegressor
    from latentode.datasets import make_damped_oscillators
    from latentode.utils import torch_threads

    with torch_threads(1):
        df = make_damped_oscillators(12, 12, missing_fraction=0.2, random_state=0)
        est = LatentODERegressor(**{**TINY, "max_epochs": 1}).fit(df)
        cond, hidden = hide_values(df, 0.3, random_state=1)
        pred = est.predict(cond, quantiles=(0.05, 0.5, 0.95), n_samples=8)
        draws = est.sample(cond, 8)
        past = df[df["t"] < 6.0]
        future = df[(df["t"] >= 6.0) & df["id"].isin(past["id"])]
        fc = est.extrapolate(past, times=future[["id", "t"]])
    cov = coverage(df, pred, 0.9, hidden)
    crps = sample_crps(df, draws, hidden)
    err = mse(df, pred, hidden)
    assert 0.0 <= cov <= 1.0 and 0.0 < crps < 10.0 and 0.0 < err < 100.0
    # the same numbers from arrays
    cols = ["x0", "x1"]
    yv = np.where(hidden, df[cols].to_numpy(), NAN)
    arr = draws[cols].to_numpy().reshape(8, len(df), 2)
    assert crps == float(np.nanmean(ev.crps_samples(yv, arr)))
    assert cov == ev.interval_coverage(yv, pred[["x0_q0.05", "x1_q0.05"]].to_numpy(),
                                       pred[["x0_q0.95", "x1_q0.95"]].to_numpy())
    sq = (pred[cols].to_numpy(np.float64) - df[cols].to_numpy(np.float64)) ** 2
    assert err == float(np.mean(sq[hidden]))
    # the baselines score the same rows as the forecast
    base = locf(past, future[["id", "t"]], fallback=0.0)
    assert np.isfinite(mse(future, fc)) and np.isfinite(mse(future, base))


# ---------------------------------------------------------------------------------------------
# gap_breakdown
# ---------------------------------------------------------------------------------------------
def _gap_case() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """Truth, conditioning frame, hidden mask and two predictions with known squared errors.

    Hidden entries (gap to the nearest visible value of the same channel and series):
    s1 a(1): inside, gap 1; s1 a(8): after a(4), gap 4; s1 b(4): after b(1), gap 3;
    s2 a(0): before a(6), gap 6; s2 b(0), b(3), b(6): no visible b, gap inf.
    """
    truth = pd.DataFrame({
        "id": [1, 1, 1, 1, 1, 2, 2, 2],
        "t": [0.0, 1.0, 2.0, 4.0, 8.0, 0.0, 3.0, 6.0],
        "a": [0.0, 1.0, 2.0, 4.0, 8.0, 1.0, NAN, 7.0],
        "b": [NAN, 3.0, NAN, 5.0, NAN, 2.0, 2.0, 2.0],
    })
    hidden = np.zeros((8, 2), dtype=bool)
    hidden[[1, 4, 5], 0] = True
    hidden[[3, 5, 6, 7], 1] = True
    cond = truth.copy()
    cond[["a", "b"]] = cond[["a", "b"]].mask(hidden)
    err = np.zeros((8, 2))  # model error at each hidden entry
    err[[1, 4, 5], 0] = [1.0, 2.0, -1.0]
    err[[3, 5, 6, 7], 1] = [3.0, 1.0, 2.0, 3.0]
    preds = {"model": np.nan_to_num(truth[["a", "b"]].to_numpy()) + err,
             "zero": np.zeros((8, 2))}
    return truth, cond, hidden, preds


def test_gap_breakdown_hand_example() -> None:
    truth, cond, hidden, preds = _gap_case()
    out = gap_breakdown(cond, truth, preds, hidden, bins=[2.0, 5.0])
    assert list(out.columns) == ["channel", "position", "gap", "n", "model", "zero"]
    got = [(str(c), str(p), str(g), int(n), m, z) for c, p, g, n, m, z in out.itertuples(
        index=False)]
    assert got == [
        ("a", "inside", "[0, 2]", 1, 1.0, 1.0),     # a(1): err 1; truth 1
        ("a", "before", "> 5", 1, 1.0, 1.0),        # a(0) of stay 2: err -1; truth 1
        ("a", "after", "(2, 5]", 1, 4.0, 64.0),     # a(8): err 2; truth 8
        ("b", "after", "(2, 5]", 1, 9.0, 25.0),     # b(4): err 3; truth 5
        ("b", "none", "none", 3, 14 / 3, 4.0),      # errs 1, 2, 3; truth 2
    ]
    by_gap = gap_breakdown(cond, truth, preds, hidden, bins=[2.0, 5.0], by=["gap"])
    assert by_gap["gap"].astype(str).tolist() == ["[0, 2]", "(2, 5]", "> 5", "none"]
    assert by_gap["n"].tolist() == [1, 2, 1, 3]
    assert by_gap["model"].tolist() == pytest.approx([1.0, 6.5, 1.0, 14 / 3])
    assert by_gap["zero"].tolist() == pytest.approx([1.0, 44.5, 1.0, 4.0])
    assert list(out["gap"].cat.categories) == ["[0, 2]", "(2, 5]", "> 5", "none"]
    by_pos = gap_breakdown(cond, truth, preds, hidden, bins=[2.0, 5.0], by="position")
    assert by_pos["position"].astype(str).tolist() == ["inside", "before", "after", "none"]
    assert by_pos["model"].tolist() == pytest.approx([1.0, 1.0, 6.5, 14 / 3])
    # the totals are mse and per_feature_mse of the same entries
    total = gap_breakdown(cond, truth, preds, hidden, by=())
    assert total["n"].tolist() == [7]
    assert total["model"].iloc[0] == pytest.approx(29 / 7)
    assert total["zero"].iloc[0] == pytest.approx(mse(truth, preds["zero"], hidden))
    per_chan = gap_breakdown(cond, truth, preds, hidden, by=["channel"])
    assert per_chan["model"].tolist() == pytest.approx(
        per_feature_mse(truth, preds["model"], hidden).tolist())
    # standardised: the model's errors of b halve, squared a quarter
    std = gap_breakdown(cond, truth, preds, hidden, by=["channel"], scale={"a": 1.0, "b": 2.0})
    assert std["model"].tolist() == pytest.approx([6 / 3, (9 + 14) / 4 / 4])


def test_gap_breakdown_quantile_bins_gap_zero_and_row_order() -> None:
    truth, cond, hidden, preds = _gap_case()
    # bins=2: the median of the finite gaps 1, 4, 3, 6 (3.5) is the one inner edge
    two = gap_breakdown(cond, truth, preds, hidden, bins=2, by=["gap"])
    assert two["gap"].astype(str).tolist() == ["[0, 3.5]", "> 3.5", "none"]
    assert two["n"].tolist() == [2, 2, 3]
    assert two["model"].tolist() == pytest.approx([(1 + 9) / 2, (4 + 1) / 2, 14 / 3])
    one = gap_breakdown(cond, truth, preds, hidden, bins=1, by=["gap"])
    assert one["gap"].astype(str).tolist() == [">= 0", "none"]
    # default mask: every observed value; visible ones lie at gap 0, inside
    every = gap_breakdown(cond, truth, {"zero": preds["zero"]}, bins=[0.0],
                          by=["position", "gap"])
    first = every.iloc[0]  # the 5 visible values: a(0), a(2), a(4) and a(6), b(1)
    assert (str(first["position"]), str(first["gap"]), first["n"]) == ("inside", "[0, 0]", 5)
    assert every["n"].sum() == 12
    # the rows' order does not matter
    perm = np.random.default_rng(0).permutation(len(truth))
    shuffled = gap_breakdown(cond.iloc[perm], truth.iloc[perm],
                             {k: v[perm] for k, v in preds.items()}, hidden[perm], bins=[2.0, 5.0])
    pd.testing.assert_frame_equal(shuffled, gap_breakdown(cond, truth, preds, hidden,
                                                          bins=[2.0, 5.0]))
    # prediction frames with the columns work like arrays
    frames = {k: pd.DataFrame(v, columns=["a", "b"]) for k, v in preds.items()}
    pd.testing.assert_frame_equal(gap_breakdown(cond, truth, frames, hidden),
                                  gap_breakdown(cond, truth, preds, hidden))


def test_gap_breakdown_forecast_rows_and_datetimes() -> None:
    truth, _, _, _ = _gap_case()
    past, future = truth[truth["t"] < 5], truth[truth["t"] >= 5].reset_index(drop=True)
    # stay 1: a(8) 4 after a(4), b unobserved after t = 1 is a different row set
    out = gap_breakdown(past, future, {"zero": np.zeros((len(future), 2))}, bins=[3.0])
    got = [(str(c), str(p), str(g), int(n)) for c, p, g, n, _ in out.itertuples(index=False)]
    # a(8) of stay 1 is 4 after a(4); a(6) of stay 2 is 6 after a(0); b(6) 3 after b(3)
    assert got == [("a", "after", "> 3", 2), ("b", "after", "[0, 3]", 1)]
    # datetimes: gaps in time, edges as timedeltas; the same groups as hours
    truth, cond, hidden, preds = _gap_case()
    start = pd.Timestamp("2024-01-01", tz="Europe/Paris")
    as_dates = [f.assign(t=start + pd.to_timedelta(f["t"], unit="h")) for f in (cond, truth)]
    dated = gap_breakdown(*as_dates, preds, hidden,
                          bins=[pd.Timedelta(hours=2), pd.Timedelta(hours=5)])
    hours = gap_breakdown(cond, truth, preds, hidden, bins=[2.0, 5.0])
    assert dated["gap"].astype(str).tolist()[:3] == ["[0, 0 days 02:00:00]",
                                                     "> 0 days 05:00:00",
                                                     "(0 days 02:00:00, 0 days 05:00:00]"]
    assert dated["n"].tolist() == hours["n"].tolist()
    assert dated["model"].tolist() == hours["model"].tolist()


def test_gap_breakdown_matches_a_row_by_row_reference() -> None:
    """Random series, times and masks: the vectorised gaps equal a direct per-entry search."""
    rng = np.random.default_rng(3)
    n = 300
    truth = pd.DataFrame({"id": rng.integers(0, 12, n), "t": rng.integers(0, 40, n) / 4.0,
                          "a": rng.normal(size=n), "b": rng.normal(size=n)})
    truth[["a", "b"]] = truth[["a", "b"]].mask(rng.random((n, 2)) < 0.3)
    cond, hidden = hide_values(truth, 0.5, columns=["a", "b"], random_state=4)
    pred = rng.normal(size=(n, 2))
    edges = [0.25, 1.0, 2.5]
    out = gap_breakdown(cond, truth, {"p": pred}, hidden, bins=edges)
    expected: dict[tuple[str, str, int], list[float]] = {}
    for j, c in enumerate(["a", "b"]):
        for r in np.flatnonzero(hidden[:, j]):
            same = (cond["id"] == truth["id"].iloc[r]) & cond[c].notna()
            ts = cond.loc[same, "t"].to_numpy()
            t = truth["t"].iloc[r]
            if not len(ts):
                pos, bucket = "none", 4
            else:
                pos = ("before" if t < ts.min() else "after" if t > ts.max() else "inside")
                bucket = int(np.searchsorted(edges, np.abs(ts - t).min(), side="left"))
            sq = (pred[r, j] - truth[c].iloc[r]) ** 2
            expected.setdefault((c, pos, bucket), []).append(sq)
    assert len(out) == len(expected)
    assert len(expected) > 10  # every position and several buckets occur
    for row, bucket in zip(out.itertuples(index=False), out["gap"].cat.codes):
        key = (str(row.channel), str(row.position), int(bucket))
        assert row.n == len(expected[key])
        assert row.p == pytest.approx(np.mean(expected[key]))


def test_gap_breakdown_errors() -> None:
    truth, cond, hidden, preds = _gap_case()
    with pytest.raises(TypeError, match="mapping"):
        gap_breakdown(cond, truth, preds["model"], hidden)
    with pytest.raises(ValueError, match="empty"):
        gap_breakdown(cond, truth, {}, hidden)
    with pytest.raises(ValueError, match="prediction name 'n'"):
        gap_breakdown(cond, truth, {"n": preds["zero"]}, hidden)
    with pytest.raises(ValueError, match="by may only name"):
        gap_breakdown(cond, truth, preds, hidden, by=["series"])
    with pytest.raises(ValueError, match="strictly increasing"):
        gap_breakdown(cond, truth, preds, hidden, bins=[2.0, 1.0])
    with pytest.raises(ValueError, match="positive number of buckets"):
        gap_breakdown(cond, truth, preds, hidden, bins=0)
    with pytest.raises(ValueError, match="timedelta edges"):
        gap_breakdown(cond, truth, preds, hidden, bins=[pd.Timedelta(hours=1)])
    with pytest.raises(ValueError, match="column 'b' is not in conditioned"):
        gap_breakdown(cond.drop(columns="b"), truth, preds, hidden)
    bad = preds["model"].copy()
    bad[3, 1] = NAN
    with pytest.raises(ValueError, match=r"predictions\['model'\] is not finite at a scored "
                                         r"entry: column 'b', row 3"):
        gap_breakdown(cond, truth, {"model": bad}, hidden)
    with pytest.raises(ValueError, match="does not observe: column 'b', row 0"):
        gap_breakdown(cond, truth, preds, np.ones((8, 2), dtype=bool))
    kept = truth.copy()
    gap_breakdown(cond, truth, preds, hidden)
    pd.testing.assert_frame_equal(truth, kept)  # inputs are not modified
