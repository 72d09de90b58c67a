"""The held-out family of data sets (``benchmarks/_unseen.py``, ``calibration.UNSEEN``): shapes,
determinism for a seed, one property of each process, and both benchmarks' ``--family``."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import BENCHMARKS, load_script

from latentode.utils import torch_threads


@pytest.fixture(scope="module")
def cal():
    return load_script(BENCHMARKS / "calibration.py")


@pytest.fixture(scope="module")
def unseen(cal):
    import _unseen  # put on sys.path by calibration.py

    return _unseen


def _truth(unseen, cal, name: str, n: int = 60, seed: int = 0):
    case = cal.UNSEEN[name]
    return unseen.make_unseen(case.make, n, case.time_range, seed, case.options,
                              return_truth=True)


def test_the_family_is_fixed(cal) -> None:
    assert list(cal.UNSEEN) == ["vanderpol", "lotka", "trend", "regimes", "doublewell"]
    assert set(cal.UNSEEN).isdisjoint(cal.SUITE)
    assert cal.FAMILIES["unseen"] is cal.UNSEEN and cal.FAMILIES["suite"] is cal.SUITE
    assert all(c.n_series == 200 and c.cutoff == 0.6 for c in cal.UNSEEN.values())


@pytest.mark.parametrize("name", ["vanderpol", "lotka", "trend", "regimes", "doublewell"])
def test_frames_are_deterministic_sorted_and_well_formed(cal, name) -> None:
    case = cal.UNSEEN[name]
    df = cal.make_case(case, 3, n_series=30)
    again = cal.make_case(case, 3, n_series=30)
    other = cal.make_case(case, 4, n_series=30)
    pd.testing.assert_frame_equal(df, again)
    cols = [c for c in df.columns if c not in ("id", "t")]
    assert not np.allclose(df[cols].fillna(0).to_numpy()[:20],
                           other[cols].fillna(0).to_numpy()[:20])
    assert list(df.columns[:2]) == ["id", "t"] and cols == [f"x{i}" for i in range(len(cols))]
    assert df["id"].nunique() == 30
    assert (df.groupby("id")["t"].diff().dropna() >= 0).all()
    lo, hi = case.time_range
    assert df["t"].between(lo, hi).all()
    assert df[cols].notna().any(axis=1).all()  # no empty rows
    sizes = df.groupby("id").size()
    assert sizes.min() >= 2 and sizes.mean() > 20
    # the extra test series of calibration.py --extra-test come from another seed
    extra = cal.extra_test_series(case, 3, 5, first_id=100)
    assert extra["id"].min() == 100 and extra["id"].nunique() == 5


def test_van_der_pol_reaches_its_limit_cycle_of_amplitude_two(cal, unseen) -> None:
    df, truth = _truth(unseen, cal, "vanderpol")
    late = truth[truth["t"] > 10.0]
    amp = late.groupby("id")["x0"].apply(lambda x: np.abs(x).max())
    amp = amp[late.groupby("id").size() >= 8]  # enough points to see a peak
    assert len(amp) > 30
    assert 1.8 < amp.median() < 2.1 and amp.max() < 2.1
    # independent missingness: both channels missing in places, neither everywhere
    frac = df[["x0", "x1"]].isna().mean()
    assert ((frac > 0.1) & (frac < 0.3)).all()


def test_lotka_volterra_is_positive_on_conserved_orbits(cal, unseen) -> None:
    df, truth = _truth(unseen, cal, "lotka")
    values = df[["x0", "x1"]].to_numpy()
    assert (values[~np.isnan(values)] > 0).all()  # multiplicative noise keeps them positive
    o = cal.UNSEEN["lotka"].options
    x, y = truth["x0"], truth["x1"]
    v = (o["delta"] * x - o["gamma"] * np.log(x) + o["beta"] * y - o["alpha"] * np.log(y))
    assert v.groupby(truth["id"]).std().max() < 1e-5  # the conserved quantity of each orbit
    assert x.mean() / y.mean() > 15  # prey and predators on different scales


def test_trend_series_have_their_own_slopes(cal, unseen) -> None:
    _, truth = _truth(unseen, cal, "trend", n=200)
    slopes = truth.groupby("id")[["t", "x0"]].apply(
        lambda g: np.polyfit(g["t"], g["x0"], 1)[0])
    assert 0.25 < slopes.std() < 0.36  # slope_std 0.3 (plus the seasonal term's leakage)
    # the last value is farther from the training mean than the first: no reversion
    first = truth.groupby("id")["x0"].first()
    last = truth.groupby("id")["x0"].last()
    mean = truth["x0"].mean()
    assert (last - mean).abs().mean() > 1.3 * (first - mean).abs().mean()


def test_regimes_are_piecewise_constant_with_shared_switches(cal, unseen) -> None:
    _, truth = _truth(unseen, cal, "regimes", n=200)
    d = truth.groupby("id")[["x0", "x1"]].diff().dropna()
    jumps = d.ne(0)
    assert (jumps["x0"] == jumps["x1"]).all()  # the channels switch together
    per_series = jumps["x0"].groupby(truth.loc[d.index, "id"]).sum()
    assert 2.0 < per_series.mean() < 3.5  # rate 0.3 on [0, 10]: 3 switches, a few unseen
    assert jumps["x0"].mean() < 0.1


def test_double_well_is_bimodal_and_observed_in_bursts(cal, unseen) -> None:
    df, truth = _truth(unseen, cal, "doublewell", n=200)
    late = truth.loc[truth["t"] > 3.0, "x0"]
    assert (late.abs() > 0.5).mean() > 0.75 and 0.25 < (late > 0).mean() < 0.75
    gaps = df.groupby("id")["t"].diff().dropna()
    assert gaps.median() < 0.1  # inside a burst
    assert df.groupby("id")["t"].apply(lambda t: t.diff().max()).median() > 1.5  # between
    sizes = df.groupby("id").size()
    assert sizes.max() > 4 * sizes.min()  # very uneven numbers of observations


def test_make_unseen_rejects_an_unknown_kind(unseen) -> None:
    with pytest.raises(ValueError, match="unknown kind 'spiral'"):
        unseen.make_unseen("spiral", 3, (0.0, 1.0), 0, {})


TINY = ["--param", "latent_dim=3", "--param", "rec_dim=6", "--param", "units=8", "--param",
        "n_layers=1", "--param", "gru_units=8", "--param", "encoder='gru'", "--param",
        "gradient='backprop'"]


def test_quality_takes_the_family(cal) -> None:
    quality = load_script(BENCHMARKS / "quality.py")
    buf = io.StringIO()
    with torch_threads(torch.get_num_threads()), contextlib.redirect_stdout(buf):
        res = quality.main(["--family", "unseen", "--epochs", "1", "--n-series", "16", *TINY])
    assert list(res) == list(cal.UNSEEN)
    for r in res.values():
        for task in ("held-out", "forecast"):
            t = r["tasks"][task]
            assert t["n"] > 0 and t["oracle"] is None and np.isfinite(t["ratio"])
    assert "| regimes |" in buf.getvalue()


def test_calibration_takes_the_family(cal) -> None:
    args = cal.build_parser().parse_args(["--suite", "--family", "unseen"])
    assert args.suite == [] and args.family == "unseen"
    buf = io.StringIO()
    with torch_threads(torch.get_num_threads()), contextlib.redirect_stdout(buf):
        table = cal.main(["--suite", "trend", "--epochs", "1", "--n-samples", "4",
                          "--latent-dim", "2"])
    assert list(table.index) == ["trend"]
    assert np.isfinite(table.loc["trend", "interp MSE"])


@pytest.mark.parametrize("name", ["vanderpol", "lotka", "trend", "regimes", "doublewell"])
def test_no_two_rows_of_a_series_share_a_time(cal, name) -> None:
    df = cal.make_case(cal.UNSEEN[name], 0)
    assert not df.duplicated(["id", "t"]).any()
