"""Calibration of the Latent ODE's predictive intervals on synthetic data with known noise.

Fits a :class:`~latentode.LatentODERegressor` on training series of
:func:`latentode.datasets.make_damped_oscillators` (or ``make_periodic``), then on held-out
test series measures

* **interpolation**: 20 % of each test series' observed values are hidden; the model
  conditions on the rest and predicts the hidden ones;
* **extrapolation**: the model conditions on the observations before ``--cutoff`` (a fraction
  of the time range) and forecasts the later ones;

and reports, against the *noisy* held-out values, the empirical coverage of the central 50 %
and 90 % predictive intervals (``predict`` / ``extrapolate`` with ``quantiles=``), the mean
CRPS (from ``sample`` draws; lower is better) and the MSE of the predictive mean. As
references it prints the oracle CRPS of the true noise-free signal with the known noise
(``N(truth, noise_std**2)``, the best any model can do) and the learned observation noise.

With ``--suite`` it measures instead how the intervals hold on data the calibration was not
developed on: one fit per data set of :data:`SUITE` (the reference oscillators above; damped
oscillators with other damping, noise and sampling rate; Ornstein-Uhlenbeck and random-walk
paths; the periodic toy; PhysioNet channels of the bundled sample), and one table whose rows are
the data sets and whose columns are the coverage of the 50 % and 90 % central intervals for
interpolation (``--hide`` of each test series' observed values hidden and predicted) and
extrapolation (the values after the cutoff, conditioning on those before), calibrated
(``calibrate=True``) and, from the same fitted weights, with one factor per channel (the
calibration before the gap factors) and uncalibrated.

``--family unseen`` (with ``--suite`` and no names) runs instead the held-out family
:data:`UNSEEN`: a Van der Pol limit cycle, Lotka-Volterra predator and prey, a linear trend with
a seasonal term, regime switching, a bistable double well observed in bursts (generators:
``benchmarks/_unseen.py``). They were fixed before any model figure existed on them and never
tuned on: their figures are the intervals on data the calibration was not developed on. Their
names can also be given to ``--suite`` (``--suite vanderpol lotka``).

One hiding of 50 test series is a noisy measurement (the 50 % coverage moves by 0.7 to 3 points
from one draw of the hidden values to the next). ``--test-draws R`` hides the test series'
values ``R`` times with different seeds and ``--extra-test N`` adds ``N`` test series drawn
from the same generator (another seed; synthetic data sets only: the bundled PhysioNet sample
has no more stays); both only change the measurement, never the fit or its calibration. The
table then also has, for the calibrated model, the coverage pooled over the draws on all test
series (``... mean``), its standard error clustered by series (``... se``: the error of that
figure as an estimate of the fitted model's coverage on new series, the choice of the test
series and of the hidden values included), the standard deviation of one draw's coverage
(``interp ... sd``) and whether the targets hold on the means (``met mean``). The forecast split
is deterministic (the values after the cutoff), so draws do not change forecasts; the extra
series do. The columns without a suffix stay the single draw on the original test series, the
figures of before.

The training series get ``--prefixes`` truncated copies each (teaching the encoder to condition
on a prefix). The validation series, on which early stopping and the calibration are fitted,
come by ``--validation``:

* ``clean`` (the default): the *original* training series are split first (the estimator's
  ``validation_fraction``, 15 of 150), the copies are made of the training part only, and the
  validation originals are given with ``fit(..., validation_data=)``: no validation series has
  a relative in training, and they look like the test series (whole, not truncated);
* ``pooled`` (the protocol of the figures before it; ``--validation pooled`` reproduces them):
  the estimator draws its validation series among originals and copies alike, so 22 to 28 of
  the 30 have a relative among the training series (a leak);
* ``grouped`` (``--grouped-validation``): ``fit(..., group_col=)``, a series and its copies on
  one side; no leak, but the pool is mostly truncated copies, unlike the test series.

Measured at seeds 0 to 3 (``--test-draws 10 --extra-test 200``), ``clean`` meets 11 or 12 of
the 14 targets on the means, ``pooled`` 12 to 14: ``clean`` is the default as the honest
measurement (its 15 validation series make the calibration noisier than the former 30), not
for its figures. Figures of the three: docs/results/calibration.md.

Usage::

    python benchmarks/calibration.py                       # a few minutes on 2 CPU cores
    python benchmarks/calibration.py --dataset periodic --noise 0.1 --epochs 60
    python benchmarks/calibration.py --suite --epochs 60   # every data set of SUITE
    python benchmarks/calibration.py --suite ou physionet  # some of them
    python benchmarks/calibration.py --suite --epochs 60 --test-draws 10 --extra-test 200
    python benchmarks/calibration.py --suite --family unseen --epochs 60 --test-draws 10 \
        --extra-test 200                                   # the held-out family
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))  # shared helpers
from _cli import parse_params  # noqa: E402
from _unseen import KINDS as UNSEEN_KINDS  # noqa: E402
from _unseen import make_unseen  # noqa: E402

from latentode import LatentODERegressor  # noqa: E402
from latentode.data import split_series  # noqa: E402
from latentode.datasets import (
    load_physionet_sample,
    make_damped_oscillators,
    make_ornstein_uhlenbeck,
    make_periodic,
)
from latentode.evaluation import coverage, crps_gaussian, hide_values, mse, sample_crps
from latentode.uncertainty import central_interval, quantile_label

LEVELS = (0.5, 0.9)
#: targets: largest gap (points) between empirical and nominal coverage, per task
TOLERANCE = {"interp": 5.0, "extrap": 10.0}


class Case(NamedTuple):
    """One data set of the suite: how to make it and where its forecasts start."""

    description: str
    make: str  # "oscillators", "ou", "periodic", "physionet" or a kind of _unseen.KINDS
    options: dict[str, Any]
    time_range: tuple[float, float] = (0.0, 10.0)
    cutoff: float = 0.6  # extrapolation: condition on this fraction of the time range
    n_series: int = 200


#: the data sets of ``--suite``; "oscillators" is the one the calibration was developed on
SUITE = {
    "oscillators": Case("reference: omega 1.5, damping 0.1, noise 0.1, 30 points on [0, 10], "
                        "20 % missing", "oscillators",
                        dict(omega=1.5, damping=0.1, noise_std=0.1, n_points=30,
                             missing_fraction=0.2)),
    "osc-fast": Case("omega 2.5, damping 0.15, noise 0.05, 60 points on [0, 8], 40 % missing",
                     "oscillators", dict(omega=2.5, damping=0.15, noise_std=0.05, n_points=60,
                                         missing_fraction=0.4), time_range=(0.0, 8.0)),
    "osc-sparse": Case("omega 1.0, damping 0.02, noise 0.2, 15 points on [0, 12], 10 % missing",
                       "oscillators", dict(omega=1.0, damping=0.02, noise_std=0.2, n_points=15,
                                           missing_fraction=0.1), time_range=(0.0, 12.0)),
    "ou": Case("Ornstein-Uhlenbeck theta 0.5, sigma 0.5, 2 channels, noise 0.05, 40 points",
               "ou", dict(theta=0.5, sigma=0.5, n_channels=2, noise_std=0.05, n_points=40,
                          missing_fraction=0.2)),
    "walk": Case("random walk sigma 0.3, noise 0.05, 30 points", "ou",
                 dict(theta=0.0, sigma=0.3, noise_std=0.05, n_points=30)),
    "periodic": Case("make_periodic: noise 0.1, 2 channels, 40 points on [0, 5], 80 % observed",
                     "periodic", dict(noise_std=0.1, n_channels=2, n_points=40,
                                      obs_fraction=0.8), time_range=(0.0, 5.0)),
    "physionet": Case("bundled PhysioNet sample: HR, MAP, Temp, RespRate; forecast after 24 h",
                      "physionet", dict(columns=["HR", "MAP", "Temp", "RespRate"]),
                      time_range=(0.0, 48.0), cutoff=0.5, n_series=300),
}


#: the held-out family (``--family unseen``): processes of other kinds than SUITE's, fixed
#: before any model figure existed on them and never tuned on (generators: _unseen.py; the
#: decision rules: docs/results/across-datasets.md); 200 series each, as the suite's synthetic sets
UNSEEN = {
    "vanderpol": Case("Van der Pol, mu ~ U(1, 2) per series, initial state ~ U(-3, 3)^2, "
                      "noise 0.1, 40 points on [0, 15], 25 % missing per channel", "vanderpol",
                      dict(n_points=40, mu_range=(1.0, 2.0), initial_range=3.0, noise_std=0.1,
                           missing_fraction=0.25), time_range=(0.0, 15.0)),
    "lotka": Case("Lotka-Volterra prey / predators (equilibrium 50 / 2), start at exp(U(-0.7, "
                  "0.7)) times it, 5 % multiplicative noise, 40 points on [0, 20], 20 % missing",
                  "lotka", dict(n_points=40, alpha=1.0, beta=0.5, gamma=1.0, delta=0.02,
                                log_spread=0.7, noise_std=0.05, missing_fraction=0.2),
                  time_range=(0.0, 20.0)),
    "trend": Case("linear trend (slope ~ N(0, 0.3^2)) + seasonal term (period 2.5, amplitude "
                  "U(0.3, 1)) + noise 0.1, 40 points on [0, 10]", "trend",
                  dict(n_points=40, level_std=1.0, slope_std=0.3, period=2.5,
                       amplitude_range=(0.3, 1.0), noise_std=0.1)),
    "regimes": Case("regime switching: Poisson(0.3) switch times, N(0, 1) levels per channel, "
                    "2 channels, noise 0.1, 40 points, 30 % missing", "regimes",
                    dict(n_points=40, rate=0.3, n_channels=2, level_std=1.0, noise_std=0.1,
                         missing_fraction=0.3)),
    "doublewell": Case("double well dx = (x - x^3) dt + 0.8 dW, bursty sampling: ~4 clusters "
                       "of ~8 times (sd 0.15) per series, noise 0.1", "doublewell",
                       dict(sigma=0.8, initial_range=1.5, mean_clusters=4.0, mean_size=8.0,
                            spread=0.15, noise_std=0.1)),
}

#: the families of data sets (``--family``); every case by name
FAMILIES = {"suite": SUITE, "unseen": UNSEEN}
CASES = {**SUITE, **UNSEEN}


def make_case(case: Case, seed: int, n_series: int | None = None) -> pd.DataFrame:
    """The long frame of one suite data set (``id``, ``t``, channels); ``n_series`` overrides
    the case's count of synthetic series (ignored for PhysioNet)."""
    opts = dict(case.options)
    if case.make == "physionet":
        df = load_physionet_sample()[["id", "t", *opts["columns"]]]
        return df[df[opts["columns"]].notna().any(axis=1)].reset_index(drop=True)
    n = case.n_series if n_series is None else n_series
    if case.make in UNSEEN_KINDS:
        return make_unseen(case.make, n, case.time_range, seed, opts)
    n_points = opts.pop("n_points")
    if case.make == "oscillators":
        return make_damped_oscillators(n, n_points, time_range=case.time_range,
                                       random_state=seed, **opts)
    if case.make == "ou":
        return make_ornstein_uhlenbeck(n, n_points, time_range=case.time_range,
                                       random_state=seed, **opts)
    return make_periodic(n, n_points, time_range=case.time_range, random_state=seed, **opts)


#: added to ``--seed`` for the data of ``--extra-test`` (never the seed of the suite's data)
EXTRA_TEST_SEED = 7919
#: the hidden values of draw ``j`` of ``--test-draws`` come from ``seed + 2 + DRAW_STRIDE * j``
DRAW_STRIDE = 1000
#: added to ``--seed`` for the series of ``--recalibrate-series`` (neither the suite's data's
#: nor ``--extra-test``'s seed)
RECALIBRATE_SEED = 15485


def extra_test_series(case: Case, seed: int, n: int, first_id: int,
                      offset: int = EXTRA_TEST_SEED) -> pd.DataFrame:
    """``n`` more series of a synthetic ``case`` (ids from ``first_id``), from the same
    generator as :func:`make_case` with another seed (``seed + offset``): new draws of the same
    process, never seen by the fit; an empty frame for PhysioNet or ``n == 0``."""
    if case.make == "physionet" or n <= 0:
        return make_case(case, seed).iloc[:0]
    extra = make_case(case, seed + offset, n_series=n)
    extra["id"] = extra["id"] + first_id
    return extra


def hidden_draws(test: pd.DataFrame, fraction: float, cols: list[str], seed: int,
                 draws: int) -> list[tuple[pd.DataFrame, np.ndarray]]:
    """``draws`` independent hidings of ``fraction`` of ``test``'s observed values
    (:func:`latentode.evaluation.hide_values`, each series' first observed row kept); draw 0
    is the suite's single draw (``random_state=seed + 2``), draw ``j`` uses
    ``seed + 2 + DRAW_STRIDE * j``."""
    return [hide_values(test, fraction, columns=cols, random_state=seed + 2 + DRAW_STRIDE * j)
            for j in range(draws)]


def covered(y: pd.DataFrame, pred: pd.DataFrame, level: float, mask: np.ndarray,
            cols: list[str]) -> np.ndarray:
    """Boolean ``(rows, columns)``: the scored entries (``mask``) of ``y`` inside their central
    ``level`` interval of ``pred`` (bounds included, as
    :func:`latentode.evaluation.coverage`, whose value is ``covered(...).sum() / mask.sum()``)."""
    lo, hi = central_interval(level)
    yv = y[cols].to_numpy(dtype=float)
    low = pred[[f"{c}_{quantile_label(lo)}" for c in cols]].to_numpy(dtype=float)
    high = pred[[f"{c}_{quantile_label(hi)}" for c in cols]].to_numpy(dtype=float)
    return np.asarray(mask, dtype=bool) & (yv >= low) & (yv <= high)


def clustered_coverage(ids: np.ndarray, inside: np.ndarray, scored: np.ndarray
                       ) -> tuple[float, float]:
    """Coverage (%) of the scored entries and its standard error clustered by series.

    ``ids`` (one per row) name the series; ``inside`` and ``scored`` are boolean ``(rows,
    columns)`` arrays, stacked over draws as more rows of the same ids. The coverage is
    ``sum(inside) / sum(scored)``; its standard error treats the series as the independent
    units (the linearised ratio estimator: ``sqrt(k / (k - 1) * sum_i (c_i - p n_i)**2) /
    sum_i n_i`` over the ``k`` series with scored entries, ``c_i`` and ``n_i`` their covered
    and scored counts), so it holds however the values of one series are correlated.
    """
    frame = pd.DataFrame({"id": ids, "c": inside.sum(axis=1), "n": scored.sum(axis=1)})
    per = frame.groupby("id")[["c", "n"]].sum()
    per = per[per["n"] > 0]
    total = float(per["n"].sum())
    if total == 0:
        return float("nan"), float("nan")
    p = float(per["c"].sum()) / total
    k = len(per)
    resid = per["c"].to_numpy(float) - p * per["n"].to_numpy(float)
    se = float(np.sqrt(k / (k - 1) * np.sum(resid**2)) / total) if k > 1 else float("nan")
    return 100.0 * p, 100.0 * se


def precise_coverage(model: Any, test: pd.DataFrame, cols: list[str], cut: float,
                     hide: float, seed: int, draws: int, quantiles: Sequence[float],
                     n_samples: int) -> dict[str, float]:
    """Coverage of a fitted ``model`` measured over ``draws`` hidings of ``test``'s values
    (:func:`hidden_draws`) and its forecasts after time ``cut``: per level, the pooled
    coverage (``... mean``) with its series-clustered standard error (``... se``), and for
    interpolation the standard deviation of one draw's coverage (``... sd``)."""
    out: dict[str, float] = {}
    ids, inside, scored, per_draw = [], {lv: [] for lv in LEVELS}, [], []
    for cond, hidden in hidden_draws(test, hide, cols, seed, draws):
        pred = model.predict(cond, quantiles=quantiles, n_samples=n_samples)
        ids.append(test["id"].to_numpy())
        scored.append(hidden)
        draw = []
        for level in LEVELS:
            inside[level].append(covered(test, pred, level, hidden, cols))
            draw.append(100.0 * inside[level][-1].sum() / max(hidden.sum(), 1))
        per_draw.append(draw)
    all_ids, all_scored = np.concatenate(ids), np.concatenate(scored)
    spread = np.asarray(per_draw).std(axis=0, ddof=1) if draws > 1 else [np.nan] * len(LEVELS)
    for level, sd in zip(LEVELS, spread):
        pct = int(level * 100)
        out[f"interp {pct} mean"], out[f"interp {pct} se"] = clustered_coverage(
            all_ids, np.concatenate(inside[level]), all_scored)
        out[f"interp {pct} sd"] = float(sd)
    early, fut = _forecast_rows(test, cols, cut)
    past, future = test[early], test[fut]
    fmask = future[cols].notna().to_numpy()
    fc = model.extrapolate(past, times=future[["id", "t"]], quantiles=quantiles,
                           n_samples=n_samples)
    for level in LEVELS:
        out[f"extrap {int(level * 100)} mean"], out[f"extrap {int(level * 100)} se"] = (
            clustered_coverage(future["id"].to_numpy(), covered(future, fc, level, fmask, cols),
                               fmask))
    out["n test"] = float(test["id"].nunique())
    out["met mean"] = _met(out, " mean")
    return out


def _met(row: dict[str, float], tag: str = "") -> float:
    """1.0 when every coverage ``'{task} {50|90}{tag}'`` of ``row`` is within its task's
    :data:`TOLERANCE` of nominal, else 0.0."""
    return float(all(abs(row[f"{task} {lv}{tag}"] - lv) <= tol
                     for task, tol in TOLERANCE.items() for lv in (50, 90)))


def _data(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, tuple[float, float]]:
    if args.dataset == "oscillators":
        time_range = (0.0, 10.0)
        df, truth = make_damped_oscillators(
            n_series=args.n_series, n_points=args.n_points, time_range=time_range,
            noise_std=args.noise, missing_fraction=0.2, random_state=args.seed,
            return_truth=True,
        )
    else:
        time_range = (0.0, 5.0)
        df, truth = make_periodic(
            n_series=args.n_series, n_points=args.n_points, time_range=time_range,
            noise_std=args.noise, obs_fraction=0.8, n_channels=2, random_state=args.seed,
            return_truth=True,
        )
    return df, truth, time_range


def _with_prefixes(train: pd.DataFrame, copies: int, time_range: tuple[float, float],
                   seed: int, group_col: str | None = None) -> pd.DataFrame:
    """Append ``copies`` truncated copies of every series (new ids), cut at a uniform time in
    the middle 30-90 % of the time range; copies with fewer than 2 rows are dropped. With
    ``group_col``, a column of that name holds each series' original id (its group: the
    series and its copies), for ``fit(..., group_col=)``."""
    rng = np.random.default_rng(seed)
    ids = train["id"].unique()
    if group_col is not None:
        train = train.assign(**{group_col: train["id"]})
    parts, next_id = [train], int(train["id"].max()) + 1
    lo, hi = time_range
    for _ in range(copies):
        cuts = pd.Series(lo + rng.uniform(0.3, 0.9, len(ids)) * (hi - lo), index=ids)
        part = train[train["t"].to_numpy() < cuts.reindex(train["id"]).to_numpy()].copy()
        part = part[part.groupby("id")["t"].transform("size") >= 2]
        part["id"] = part["id"] + next_id
        next_id = int(part["id"].max()) + 1 if len(part) else next_id
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _scores(
    frame: pd.DataFrame, samples: pd.DataFrame, y: pd.DataFrame, truth: pd.DataFrame,
    mask: np.ndarray, cols: list[str], noise: float,
) -> dict[str, float]:
    """Coverage, CRPS and MSE of one task over the entries in ``mask``."""
    out: dict[str, float] = {"n values": float(mask.sum())}
    for level in LEVELS:
        out[f"cov{int(level * 100)}"] = 100.0 * coverage(y, frame, level, mask, columns=cols)
    out["CRPS"] = sample_crps(y, samples, mask, columns=cols)
    yv = np.where(mask, y[cols].to_numpy(), np.nan)
    out["oracle CRPS"] = float(np.nanmean(crps_gaussian(yv, truth[cols].to_numpy(), noise)))
    out["MSE"] = mse(y, frame, mask, columns=cols)
    return out


def _estimator(args: argparse.Namespace) -> LatentODERegressor:
    """The benchmark's small model (GRU encoder, fixed-step solver, one thread)."""
    return LatentODERegressor(
        latent_dim=args.latent_dim, rec_dim=24, units=48, n_layers=1, gru_units=48,
        encoder="gru", gradient="backprop", solver=args.solver, max_epochs=args.epochs,
        batch_size=32, lr=1e-2, kl_warmup=5, patience=args.patience, device="cpu",
        n_jobs=max(1, args.threads),
        random_state=args.seed, verbose=args.verbose, obs_dropout=args.obs_dropout,
        scoring=getattr(args, "scoring", "loss"),
    ).set_params(**parse_params(getattr(args, "param", [])))


def _group_col(args: argparse.Namespace) -> str | None:
    """The group column of the training frame with ``--grouped-validation`` (each series with
    its truncated copies, kept on one side of the estimator's validation split), else None."""
    return "group" if _validation(args) == "grouped" else None


def _validation(args: argparse.Namespace) -> str:
    """The validation protocol: ``--validation``, ``"grouped"`` with ``--grouped-validation``;
    a partial namespace without either (as the tests build) keeps the former ``"pooled"``."""
    if getattr(args, "grouped_validation", False):
        return "grouped"
    return str(getattr(args, "validation", "pooled"))


def _fit_data(args: argparse.Namespace, train: pd.DataFrame, time_range: tuple[float, float],
              ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training frame (``train`` and its ``--prefixes`` truncated copies) and the keyword
    arguments of ``fit`` that give the validation series of the protocol (``--validation``).

    ``"clean"`` splits the original series of ``train`` first, as the estimator would
    (``split_series`` at its ``validation_fraction``, seeded by ``--seed``), copies the training
    part only and returns the validation originals as ``validation_data``."""
    seed = args.seed + 3
    if _validation(args) != "clean":
        group_col = _group_col(args)
        return (_with_prefixes(train, args.prefixes, time_range, seed, group_col),
                {"group_col": group_col})
    ids = train["id"].unique()
    fraction = float(_estimator(args).validation_fraction)
    keep, held = split_series(len(ids), fraction, np.random.default_rng(args.seed + 4))
    if not len(held):
        raise ValueError(f"--validation clean needs validation series: validation_fraction="
                         f"{fraction} of {len(ids)} series leaves none.")
    is_held = train["id"].isin(ids[held]).to_numpy()
    return (_with_prefixes(train[~is_held], args.prefixes, time_range, seed),
            {"validation_data": train[is_held]})


def _test_split(df: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean rows of the held-out test series (a ``fraction`` of the ids)."""
    ids = df["id"].unique()
    rng = np.random.default_rng(seed + 1)
    test_ids = rng.choice(ids, size=max(1, int(round(fraction * len(ids)))), replace=False)
    return df["id"].isin(test_ids).to_numpy()


def _forecast_rows(test: pd.DataFrame, cols: list[str], cut: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Rows to condition on (``t < cut``) and rows to forecast (later rows of series that have
    an observed value before ``cut``)."""
    early = (test["t"] < cut).to_numpy()
    past = test[early]
    has_past = test["id"].isin(past.loc[past[cols].notna().any(axis=1), "id"]).to_numpy()
    return early, ~early & has_past


def baselines(cond: pd.DataFrame, query: pd.DataFrame | None, cols: list[str],
              fallback: pd.Series, task: str) -> dict[str, pd.DataFrame]:
    """The baselines of ``task`` (``"held-out"``: linear interpolation, LOCF, the series'
    mean; ``"forecast"``: LOCF, the series' mean) from the visible values of ``cond`` (at
    ``query``'s rows); ``fallback``: each channel's value for a series without one."""
    from latentode.evaluation import channel_mean, linear_interpolation, locf

    out = {}
    if task == "held-out":
        out["linear"] = linear_interpolation(cond, query, columns=cols, fallback=fallback)
    out["LOCF"] = locf(cond, query, columns=cols, fallback=fallback)
    out["mean"] = channel_mean(cond, query, columns=cols, fallback=fallback)
    return out


def uncalibrated(est: LatentODERegressor, keep_channel: bool = False) -> LatentODERegressor:
    """A copy of the fitted ``est`` with the calibration undone (the same weights), or with
    ``keep_channel`` only its gap factors (one factor per channel, as before them)."""
    raw = copy.deepcopy(est)
    if not keep_channel:
        raw.model_.spread_scale.fill_(1.0)
    raw.model_.gap_spread.reset()
    return raw


def run_suite(args: argparse.Namespace, names: Sequence[str]) -> pd.DataFrame:
    """Fit one model per data set of ``names`` (keys of :data:`SUITE`); return the coverage
    table (rows: data sets)."""
    quantiles = sorted({q for level in LEVELS for q in central_interval(level)})
    rows = {}
    precise = args.test_draws > 1 or args.extra_test > 0
    print("$ python benchmarks/calibration.py " + " ".join(args.argv), flush=True)
    for name in names:
        case = CASES[name]
        start = time.perf_counter()
        df = make_case(case, args.seed)
        cols = [c for c in df.columns if c not in ("id", "t")]
        is_test = _test_split(df, args.test_fraction, args.seed)
        train, test = df[~is_test], df[is_test]
        train, fit_kw = _fit_data(args, train, case.time_range)
        est = _estimator(args).fit(train, **fit_kw)
        fit_s = time.perf_counter() - start
        variants = [("", est), (" one", uncalibrated(est, keep_channel=True)),
                    (" raw", uncalibrated(est))]
        row: dict[str, float] = {}
        extra = extra_test_series(case, args.seed, args.extra_test,
                                  first_id=int(df["id"].max()) + 1)
        recal = None
        if args.recalibrate_series > 0 and case.make != "physionet":
            fresh = extra_test_series(
                case, args.seed, args.recalibrate_series,
                first_id=int(max(df["id"].max(), extra["id"].max() if len(extra) else 0)) + 1,
                offset=RECALIBRATE_SEED)
            start = time.perf_counter()
            recal = copy.deepcopy(est).recalibrate(fresh)
            row["recal s"] = time.perf_counter() - start
            variants.append((" recal", recal))
        cond, hidden = hide_values(test, args.hide, columns=cols, random_state=args.seed + 2)
        lo, hi = case.time_range
        cutoff = lo + case.cutoff * (hi - lo)
        early, fut = _forecast_rows(test, cols, cutoff)
        past, future = test[early], test[fut]
        fmask = future[cols].notna().to_numpy()
        scale = dict(zip(cols, est.scaler_.scale_.tolist()))  # MSE of standardised values
        for tag, model in variants:
            pred = model.predict(cond, quantiles=quantiles, n_samples=args.n_samples)
            fc = model.extrapolate(past, times=future[["id", "t"]], quantiles=quantiles,
                                   n_samples=args.n_samples)
            for level in LEVELS:
                row[f"interp {int(level * 100)}{tag}"] = 100 * coverage(
                    test, pred, level, hidden, columns=cols)
                row[f"extrap {int(level * 100)}{tag}"] = 100 * coverage(
                    future, fc, level, fmask, columns=cols)
            if not tag:
                row["interp MSE"] = mse(test, pred, hidden, columns=cols, scale=scale)
                row["extrap MSE"] = mse(future, fc, fmask, columns=cols,
                                        scale=scale)
        # the baselines on the same points (fallback: the training mean of the channel)
        fallback = pd.Series(est.scaler_.mean_, index=cols)
        for task, seen, query, truth, mask in (
                ("held-out", cond, None, test, hidden),
                ("forecast", past, future[["id", "t"]], future, fmask)):
            for method, frame in baselines(seen, query, cols, fallback, task).items():
                row[f"{'interp' if task == 'held-out' else 'extrap'} {method} MSE"] = mse(
                    truth, frame, mask, columns=cols, scale=scale)
        row["n interp"], row["n extrap"] = float(hidden.sum()), float(fmask.sum())
        row["epochs"] = float(est.history_.n_epochs)
        row["best"] = float(est.history_.best_epoch + 1)
        row["fit s"] = fit_s
        row["met"] = _met(row)
        precise_args = (pd.concat([test, extra], ignore_index=True), cols, cutoff, args.hide,
                        args.seed, args.test_draws, quantiles, args.n_samples)
        if precise:
            row.update(precise_coverage(est, *precise_args))
        if recal is not None:
            row["met recal"] = _met(row, " recal")
            if precise:
                row.update({f"{key} recal": value for key, value
                            in precise_coverage(recal, *precise_args).items()
                            if key.endswith(("mean", "se"))})
        rows[name] = row
        tails = est.model_.gap_spread.tail_df  # (kinds, C): inside / beyond the window
        print(f"{name}: {case.description}; {df['id'].nunique()} series, validation "
              f"{_validation(args)}, {est.history_.n_epochs} epochs in {fit_s:.0f} s; spread "
              "factors "
              + ", ".join(f"{v:.2f}" for v in est.model_.spread_scale.tolist())
              + "; tails (degrees of freedom, inside / beyond) "
              + ", ".join(f"{c} {i:g} / {b:g}" for c, i, b in zip(cols, *tails.tolist())),
              flush=True)
    table = pd.DataFrame(rows).T
    order = [f"{task} {lv}{tag}" for task in TOLERANCE for tag in ("", " one", " raw")
             for lv in (50, 90)]
    if precise:
        order = [f"{task} {lv} {stat}" for task in TOLERANCE for lv in (50, 90)
                 for stat in ("mean", "se", "sd") if not (task == "extrap" and stat == "sd")
                 ] + ["met mean", "n test"] + order
    if args.recalibrate_series > 0:  # beside the fit's calibration, the recalibrated model's
        recal = [f"{task} {lv} {stat}recal" for task in TOLERANCE for lv in (50, 90)
                 for stat in (("mean ", "se ") if precise else ()) + ("",)]
        order = recal + (["met mean recal"] if precise else []) + ["met recal"] + order
    table = table[[c for c in order if c in table.columns]
                  + [c for c in table.columns if c not in order]]
    print(f"\nCoverage (%) of the central 50 % / 90 % intervals on held-out test series "
          f"(interp: {args.hide:.0%} of observed values hidden; extrap: values after the "
          f"cutoff); one: the same model with one factor per channel (no gap factors); raw: "
          f"uncalibrated; MSE of standardised values (linear / LOCF / mean MSE: linear "
          f"interpolation, the last observation carried forward and the series' mean on the "
          f"same points); met: "
          f"within {TOLERANCE['interp']:g} / {TOLERANCE['extrap']:g} points of nominal.")
    if precise:
        print(f"mean / se / sd: the calibrated model over {args.test_draws} hidings of the "
              f"test series' values, on the suite's test series and {args.extra_test} more "
              f"from the same generator (synthetic data sets; PhysioNet: none more; n test); "
              f"mean: pooled coverage, se: its standard error clustered by series, sd: one "
              f"draw's standard deviation (the forecast split is deterministic: draws do not "
              f"change it); met mean: the targets on the means. The columns without a suffix: "
              f"the single draw of the suite's own test series, as before.")
    if args.recalibrate_series > 0:
        print(f"recal: the same fitted model recalibrated (LatentODERegressor.recalibrate, its "
              f"calibration_structure) on {args.recalibrate_series} more series from the same "
              f"generator (seed + {RECALIBRATE_SEED}; synthetic data sets only), measured as "
              f"the columns without it; recal s: its time.")
    print(markdown(table))
    return table


def markdown(table: pd.DataFrame) -> str:
    """The table as a Markdown table (coverage with one decimal, MSE with three)."""
    def fmt(col: str, v: float) -> str:
        if col.startswith("met"):
            return "yes" if v else "**no**"
        if col.startswith(("n ", "epochs", "best", "fit")):
            return f"{v:.0f}"
        if col.endswith((" se", " sd", " se recal")):
            return f"{v:.2f}"
        return f"{v:.3f}" if "MSE" in col else f"{v:.1f}"

    lines = ["| data set | " + " | ".join(table.columns) + " |",
             "|---" * (len(table.columns) + 1) + "|"]
    for name, r in table.iterrows():
        lines.append(f"| {name} | " + " | ".join(fmt(c, r[c]) for c in table.columns) + " |")
    return "\n".join(lines)


def family_names() -> str:
    """The data sets of each family, for a command line's help."""
    return f"SUITE's {', '.join(SUITE)}; UNSEEN's {', '.join(UNSEEN)}"


def add_family_argument(p: argparse.ArgumentParser, without: str) -> None:
    """Declare ``--family`` on ``p``: every data set of the family is what ``without`` (the
    command line naming no data set) runs. One declaration for the benchmarks that take the
    families (this one and ``benchmarks/quality.py``)."""
    p.add_argument("--family", choices=tuple(FAMILIES), default="suite",
                   help=f"{without}: every data set of this family (suite: SUITE, the "
                        "calibration suite, the development set; unseen: UNSEEN, the held-out "
                        "family, never tuned on)")


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (its defaults are the suite's settings; the diagnosis
    scripts of benchmarks/diagnostics build their fits' settings from it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", nargs="*", choices=tuple(CASES), default=None,
                   metavar="NAME", help="coverage on these data sets (all of --family if none "
                   f"named): {family_names()}")
    add_family_argument(p, "--suite without names")
    p.add_argument("--hide", type=float, default=0.3,
                   help="--suite: fraction of each test series' observed values hidden")
    p.add_argument("--test-draws", type=int, default=1, metavar="R",
                   help="--suite: also measure the calibrated model over R hidings of the test "
                        "series' values (different seeds; the first is the suite's), with "
                        "standard errors; 1 with --extra-test 0: the single draw only")
    p.add_argument("--extra-test", type=int, default=0, metavar="N",
                   help="--suite: N more test series from the same generator (another seed) "
                        "for the measurement of --test-draws; not for PhysioNet (no more "
                        "stays); the fit and its calibration are unchanged")
    p.add_argument("--recalibrate-series", type=int, default=0, metavar="N",
                   help="--suite: also recalibrate each fitted model on N more series from the "
                        "same generator (another seed than the data's and --extra-test's; not "
                        "for PhysioNet) and measure it as the fit's calibration (columns "
                        "'... recal')")
    p.add_argument("--dataset", choices=("oscillators", "periodic"), default="oscillators")
    p.add_argument("--n-series", type=int, default=200)
    p.add_argument("--n-points", type=int, default=30)
    p.add_argument("--noise", type=float, default=0.1, help="observation noise std")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--cutoff", type=float, default=0.6,
                   help="extrapolation: condition on the first fraction of the time range")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--n-samples", type=int, default=100, help="posterior z_t0 samples")
    p.add_argument("--patience", type=int, default=25, help="early-stopping patience")
    p.add_argument("--scoring", choices=("loss", "mse"), default="loss",
                   help="what early stopping and the best weights watch on the validation "
                        "series (LatentODERegressor(scoring=...))")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set any LatentODERegressor parameter (repeatable), e.g. "
                        "likelihood=student_t")
    p.add_argument("--latent-dim", type=int, default=6)
    p.add_argument("--solver", choices=("rk4", "dopri5", "euler"), default="rk4")
    p.add_argument("--prefixes", type=int, default=1,
                   help="training copies of each series truncated at a random time (teaches "
                        "the encoder to condition on a prefix, as extrapolation does); 0: none")
    p.add_argument("--validation", choices=("clean", "pooled", "grouped"), default="clean",
                   help="where the validation series (early stopping, calibration) come from: "
                        "clean, originals split off before the copies are made and given with "
                        "fit's validation_data; pooled, the estimator's split among originals "
                        "and copies alike (the figures before clean); grouped, that split with "
                        "each series and its copies on one side (fit's group_col)")
    p.add_argument("--grouped-validation", action="store_true",
                   help="the same as --validation grouped")
    p.add_argument("--obs-dropout", type=float, default=0.0,
                   help="fraction of observed values hidden from the encoder in training")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the benchmark; return the table (rows: tasks, or data sets with ``--suite``)."""
    p = build_parser()
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.test_draws < 1 or args.extra_test < 0 or args.recalibrate_series < 0:
        p.error("--test-draws must be >= 1, --extra-test and --recalibrate-series >= 0")

    torch.set_num_threads(max(1, args.threads))
    if args.suite is not None:
        return run_suite(args, args.suite or list(FAMILIES[args.family]))
    start = time.perf_counter()
    df, truth, time_range = _data(args)
    cols = [c for c in df.columns if c not in ("id", "t")]
    ids = df["id"].unique()
    is_test = _test_split(df, args.test_fraction, args.seed)
    test_ids = df["id"][is_test].unique()
    train, test, test_truth = df[~is_test], df[is_test], truth[is_test]
    train, fit_kw = _fit_data(args, train, time_range)

    est = _estimator(args).fit(train, **fit_kw)
    fit_s = time.perf_counter() - start
    obs_std = est.scaler_.inverse_std(est.model_.obs_std.detach().cpu().numpy().astype(float))
    quantiles = sorted({q for level in LEVELS for q in central_interval(level)} | {0.5})
    s = args.n_samples
    rows = {}

    # interpolation: hidden values inside each test series
    cond, hidden = hide_values(test, 0.2, columns=cols, random_state=args.seed + 2)
    pred = est.predict(cond, quantiles=quantiles, n_samples=s)
    rows["interpolation"] = _scores(pred, est.sample(cond, s), test, test_truth, hidden, cols,
                                    args.noise)

    # extrapolation: condition on t < cutoff, forecast the later observations
    cut = time_range[0] + args.cutoff * (time_range[1] - time_range[0])
    early, fut_rows = _forecast_rows(test, cols, cut)
    past = test[early]
    future, future_truth = test[fut_rows], test_truth[fut_rows]
    query = future[["id", "t"]]
    fc = est.extrapolate(past, times=query, quantiles=quantiles, n_samples=s)
    rows["extrapolation"] = _scores(fc, est.sample(past, s, times=query), future, future_truth,
                                    future[cols].notna().to_numpy(), cols, args.noise)

    table = pd.DataFrame(rows).T
    h = est.history_
    print(f"{args.dataset}: {len(ids)} series ({len(test_ids)} test), {args.n_points} points, "
          f"noise_std {args.noise:g}; fitted {h.n_epochs} epochs in {fit_s:.0f} s "
          f"(best epoch {h.best_epoch}, {h.stopped_reason}); {s} posterior samples; "
          f"extrapolation cutoff t = {cut:g}.")
    print("learned obs_std per channel: "
          + ", ".join(f"{c} {v:.3f}" for c, v in zip(cols, obs_std))
          + f" (true {args.noise:g}); spread scale from validation series: "
          + ", ".join(f"{c} {v:.2f}" for c, v in zip(cols, est.model_.spread_scale.tolist())))
    print("\nCoverage (%) of central predictive intervals vs noisy held-out values; "
          "CRPS and MSE in data units:")
    print(table.to_string(float_format=lambda x: f"{x:.3f}",
                          formatters={"n values": "{:.0f}".format,
                                      "cov50": "{:.1f}".format, "cov90": "{:.1f}".format}))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return table


if __name__ == "__main__":
    main()
