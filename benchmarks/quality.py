"""The model beside the baselines across data sets: held-out values and forecasts (issue #15).

On each data set of the calibration suite (:data:`calibration.SUITE`: damped oscillators with
three settings, Ornstein-Uhlenbeck paths, a random walk, the periodic toy and channels of the
bundled PhysioNet sample; the same data, seeds and test split as ``calibration.py --suite``),
fits :class:`~latentode.LatentODERegressor` **with the library's defaults** on the training
series (only ``max_epochs``, ``random_state`` and ``verbose`` are set, plus what ``--param``
overrides; no truncated training copies, unlike the calibration suite's small model), then
scores on the held-out test series

* **held-out values**: ``--hide`` (30 %) of each test series' observed values are hidden
  (:func:`latentode.evaluation.hide_values`, never a series' first observed row); the model
  conditions on the rest and predicts the hidden ones, beside per-series linear interpolation,
  LOCF and the series' channel mean of the visible values;
* **forecasts**: the model conditions on the values before the data set's cutoff (60 % of the
  time range; PhysioNet: 24 h of 48) and forecasts every later observed value, beside LOCF and
  the series' mean of its conditioning part (linear interpolation is not defined beyond the
  last value: it would be LOCF).

Every method is scored on exactly the same entries (a scored entry that a method cannot
predict is an error, never skipped): a series without any visible value of a channel gets the
channel's training mean from each baseline. MSE of values standardised by the training
series' mean and standard deviation per channel (``ddof=0``), pooled over the scored entries;
"ratio" is the model's MSE over the best baseline's (below 1: the model wins). Where the
generating process is known (Ornstein-Uhlenbeck, random walk, damped oscillators), "oracle"
gives the floor: the posterior mean of the process with its true parameters given the same
visible values (:func:`oracle`; not a baseline, a user does not know the process).

``--family unseen`` scores instead the held-out family :data:`calibration.UNSEEN` (a Van der
Pol limit cycle, Lotka-Volterra predator and prey, a linear trend with a seasonal term, regime
switching, a bistable double well observed in bursts; ``benchmarks/_unseen.py``), fixed before
any model figure existed on it and never tuned on; ``--datasets`` takes the names of either
family. No oracle there (None).

Each data set also gets a diagnosis (printed with ``--breakdown``, always in ``--out``): the
MSEs by position and gap to the channel's nearest visible value for the held-out values, by
horizon (time since the channel's last conditioning value) for the forecasts
(:func:`latentode.evaluation.gap_breakdown`), and the forecasts' *reversion*: the least-squares
slope ``b`` of ``prediction - last value`` on ``training mean - last value`` (0: the forecast
stays at the last value, as LOCF; 1: it returns to the training mean), for the model and for
the true future values (the slope the data support).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/quality.py --epochs 100 --threads 1 --out q.json
    python benchmarks/quality.py --datasets ou walk --epochs 300 --breakdown
    python benchmarks/quality.py --param readout=latent --seed 1
    python benchmarks/quality.py --point-rules posterior_mean predictive_mean --seed 1
    python benchmarks/quality.py --family unseen --epochs 100 --threads 1 --breakdown

``--point-rules`` scores each point-prediction rule (``point_prediction``) on the same fit: the
model is fitted once, then switched with ``set_params`` before each rule's predictions (same
hidden values, same baselines); one table per rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
from _cli import add_point_rules, add_seed_arguments, model_seed, parse_params  # noqa: E402
from calibration import (  # noqa: E402
    CASES,
    FAMILIES,
    SUITE,  # noqa: F401 (part of this module's namespace: its tests read quality.SUITE)
    Case,
    _forecast_rows,
    _test_split,
    add_family_argument,
    family_names,
    make_case,
)
from calibration import baselines as _baselines  # noqa: E402

#: the methods scored on each task, the model first
METHODS = {"held-out": ("model", "linear", "LOCF", "mean"),
           "forecast": ("model", "LOCF", "mean")}


def reversion(pred: np.ndarray, last: np.ndarray, mean: np.ndarray, mask: np.ndarray
              ) -> float:
    """Least-squares slope of ``pred - last`` on ``mean - last`` over the ``mask`` entries.

    Parameters
    ----------
    pred : numpy.ndarray of shape (n, C)
        Forecasts (or the true values, for the slope the data support); entries outside
        ``mask`` are ignored (may be NaN).
    last : numpy.ndarray of shape (n, C)
        The last conditioning value of the entry's series and channel (LOCF).
    mean : numpy.ndarray of shape (C,)
        The channel's training mean.
    mask : numpy.ndarray of bool, shape (n, C)
        The scored entries.

    Returns
    -------
    float
        0 for a forecast that stays at the last value, 1 for one at the training mean.
    """
    d = np.broadcast_to(mean, last.shape) - last
    num = np.where(mask, (pred - last) * d, 0.0).sum()
    den = np.where(mask, d * d, 0.0).sum()
    return float(num / den) if den > 0 else float("nan")


def _ou_smooth(t: np.ndarray, y: np.ndarray, theta: float, sigma: float, var0: float,
               noise: float, t0: float) -> np.ndarray:
    """Posterior mean of a zero-mean Ornstein-Uhlenbeck path (random walk if ``theta == 0``)
    started from ``N(0, var0)`` at ``t0``, at the sorted times ``t``, given the noisy values
    ``y`` (NaN: not observed): a Kalman filter and a Rauch-Tung-Striebel smoother."""
    n = len(t)
    a = np.exp(-theta * np.diff(t, prepend=t0))
    q = (sigma**2 * -np.expm1(-2 * theta * np.diff(t, prepend=t0)) / (2 * theta) if theta > 0
         else sigma**2 * np.diff(t, prepend=t0))
    mp, pp, mf, pf = (np.empty(n) for _ in range(4))
    m, p = 0.0, var0
    for i in range(n):
        m, p = a[i] * m, a[i] ** 2 * p + q[i]
        mp[i], pp[i] = m, p
        if not np.isnan(y[i]):
            k = p / (p + noise**2)
            m, p = m + k * (y[i] - m), (1 - k) * p
        mf[i], pf[i] = m, p
    ms = mf.copy()
    for i in range(n - 2, -1, -1):
        g = pf[i] * a[i + 1] / pp[i + 1] if pp[i + 1] > 0 else 0.0
        ms[i] = mf[i] + g * (ms[i + 1] - mp[i + 1])
    return ms


def _oscillator_fit(t: np.ndarray, y: np.ndarray, omega: float, zeta: float,
                    r2: float, noise: float, t0: float) -> np.ndarray:
    """Posterior mean of a damped oscillator's position and velocity at the times ``t`` given
    the noisy values ``y`` (``(n, 2)``, NaN: not observed), under a Gaussian prior on the
    initial state with the generator's second moments (``E[r**2]``): ridge regression."""
    s = t - t0
    zw, wd = zeta * omega, omega * np.sqrt(1 - zeta**2)
    dec, c, sn = np.exp(-zw * s), np.cos(wd * s), np.sin(wd * s)
    phi = np.stack([np.stack([c + zw / wd * sn, sn / wd], -1),
                    np.stack([-(omega**2) / wd * sn, c - zw / wd * sn], -1)], 1)
    phi = dec[:, None, None] * phi  # (n, channel, initial state)
    seen = ~np.isnan(y)
    h = phi[seen]  # (k, 2)
    prior = np.diag([r2 / 2, omega**2 * r2 / 2])
    post = np.linalg.inv(np.linalg.inv(prior) + h.T @ h / noise**2)
    s0 = post @ (h.T @ y[seen]) / noise**2
    return phi @ s0


def oracle(case: Case, cond: pd.DataFrame, truth: pd.DataFrame, cols: list[str]
           ) -> pd.DataFrame | None:
    """The best prediction with the generating process known, at the rows of ``truth``.

    The posterior mean of the noise-free process given the visible values of ``cond`` (per
    series): exact for the Ornstein-Uhlenbeck paths and the random walk (Kalman smoother with
    the true parameters), for the damped oscillators a ridge regression of the initial state
    with the true dynamics (a Gaussian prior with the generator's moments). None for the data
    sets without a known process (the periodic toy's frequency and PhysioNet).

    Parameters
    ----------
    case : Case
        The data set; its ``make`` and ``options`` name the process and its parameters.
    cond : pandas.DataFrame
        The visible values (NaN: hidden), per series.
    truth : pandas.DataFrame
        The rows to predict (``id``, ``t``); every series must be in ``cond``.
    cols : list of str
        The channels.

    Returns
    -------
    pandas.DataFrame or None
        ``id``, ``t`` and ``cols`` at the rows of ``truth``, in its order.
    """
    opts, t0 = case.options, case.time_range[0]
    if case.make not in ("ou", "oscillators"):
        return None
    out = np.full((len(truth), len(cols)), np.nan)
    tq_all, tc_all = truth["t"].to_numpy(np.float64), cond["t"].to_numpy(np.float64)
    yc_all = cond[cols].to_numpy(np.float64)
    cond_rows = pd.Series(np.arange(len(cond))).groupby(cond["id"].to_numpy()).apply(list)
    for sid, q_rows in pd.Series(np.arange(len(truth))).groupby(truth["id"].to_numpy()):
        c_rows = np.asarray(cond_rows.get(sid, []), dtype=np.int64)
        t = np.concatenate([tc_all[c_rows], tq_all[q_rows.to_numpy()]])
        y = np.concatenate([yc_all[c_rows], np.full((len(q_rows), len(cols)), np.nan)])
        order = np.argsort(t, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        t, y = t[order], y[order]
        if case.make == "ou":
            theta, sigma = opts["theta"], opts["sigma"]
            var0 = sigma**2 / (2 * theta) if theta > 0 else 0.0
            est = np.stack([_ou_smooth(t, y[:, j], theta, sigma, var0, opts["noise_std"], t0)
                            for j in range(len(cols))], -1)
        else:
            lo, hi = 0.5, 1.5  # make_damped_oscillators' default amplitude_range
            r2 = (hi**3 - lo**3) / (3 * (hi - lo))
            est = _oscillator_fit(t, y, opts["omega"], opts["damping"], r2,
                                  opts["noise_std"], t0)
        out[q_rows.to_numpy()] = est[back][len(c_rows):]
    frame = truth[["id", "t"]].copy()
    for j, c in enumerate(cols):
        frame[c] = out[:, j]
    return frame


def score_tasks(est: Any, test: pd.DataFrame, case: Case, cols: list[str], loc: pd.Series,
                scale: pd.Series, *, hide: float, seed: int, bins: int = 4
                ) -> dict[str, dict[str, Any]]:
    """Both tasks of one fitted model on the test series, beside the baselines.

    Parameters
    ----------
    est : LatentODERegressor
        The fitted model.
    test : pandas.DataFrame
        The test series (``id``, ``t``, ``cols``).
    case : Case
        The data set (its time range and forecast cutoff; its process for the oracle).
    cols : list of str
        The channels.
    loc, scale : pandas.Series
        The training mean and standard deviation of each channel (standardised MSE; the
        baselines' fallback is ``loc``).
    hide : float
        Fraction of each test series' observed values hidden (held-out task).
    seed : int
        The run's seed (the hidden values use ``seed + 2``, as ``calibration.py --suite``).
    bins : int
        Gap buckets of the breakdowns.

    Returns
    -------
    dict
        Per task (``"held-out"``, ``"forecast"``): ``n`` (scored entries), ``mse`` (per method
        of :data:`METHODS`), ``best`` (the best baseline), ``ratio`` (model / best baseline),
        ``oracle`` (MSE, or None), ``breakdown`` (records of
        :func:`~latentode.evaluation.gap_breakdown`), for forecasts ``reversion`` (model and
        data), and the frames behind them (``_truth``, ``_cond``, ``_mask``, ``_pred``: per
        method, rows of the truth in its order).
    """
    from latentode.evaluation import gap_breakdown, hide_values, mse

    cond, hidden = hide_values(test, hide, columns=cols, random_state=seed + 2)
    lo, hi = case.time_range
    early, fut = _forecast_rows(test, cols, lo + case.cutoff * (hi - lo))
    past, future = test[early], test[fut]
    query = future[["id", "t"]]
    tasks = {
        "held-out": (test, cond, hidden, est.predict(cond), None, ("position", "gap")),
        "forecast": (future, past, future[cols].notna().to_numpy(),
                     est.extrapolate(past, times=query), query, ("gap",)),
    }
    out: dict[str, dict[str, Any]] = {}
    for task, (truth, seen, mask, model, q, by) in tasks.items():
        preds = {"model": model, **_baselines(seen, q, cols, loc, task)}
        scores = {m: mse(truth, preds[m], mask, columns=cols, loc=loc, scale=scale)
                  for m in METHODS[task]}
        best = min((m for m in scores if m != "model"), key=scores.__getitem__)
        known = oracle(case, seen, truth, cols)
        shown = {m: preds[m] for m in METHODS[task]}
        if known is not None:
            preds["oracle"] = shown["oracle"] = known
        br = gap_breakdown(seen, truth, shown, mask, columns=cols, bins=bins, by=by, loc=loc,
                           scale=scale)
        res: dict[str, Any] = {
            "n": int(mask.sum()), "mse": scores, "best": best,
            "ratio": scores["model"] / scores[best],
            "oracle": None if known is None else mse(truth, known, mask, columns=cols,
                                                     loc=loc, scale=scale),
            "breakdown": json.loads(br.astype({c: str for c in by}).to_json(orient="records")),
            "_truth": truth, "_cond": seen, "_mask": mask, "_pred": preds,
        }
        if task == "forecast":
            y = truth[cols].to_numpy(np.float64)
            last = preds["LOCF"][cols].to_numpy(np.float64)
            mu = loc[cols].to_numpy(np.float64)
            res["reversion"] = {
                "model": reversion(model[cols].to_numpy(np.float64), last, mu, mask),
                "data": reversion(y, last, mu, mask)}
        out[task] = res
    return out


def run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fit the defaults on one data set of :data:`calibration.CASES` (:data:`SUITE` or the
    held-out family); both tasks beside the baselines."""
    import warnings

    from latentode import LatentODERegressor

    case = CASES[name]
    if args.n_series is not None and case.make != "physionet":
        case = case._replace(n_series=args.n_series)
    df = make_case(case, args.seed)
    cols = [c for c in df.columns if c not in ("id", "t")]
    is_test = _test_split(df, args.test_fraction, args.seed)
    train, test = df[~is_test], df[is_test].reset_index(drop=True)
    loc, scale = train[cols].mean(), train[cols].std(ddof=0)
    params = {"max_epochs": args.epochs, "random_state": model_seed(args),
              "verbose": args.verbose}
    if args.threads != 1:
        params["n_jobs"] = args.threads
    est = LatentODERegressor(**params).set_params(**parse_params(args.param))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "series without values" notes
        est.fit(train, time_col="t", id_col="id")
    fit_s = time.perf_counter() - start
    rules = args.point_rules or [est.point_prediction]
    by_rule: dict[str, dict[str, Any]] = {}
    predict_s: dict[str, float] = {}
    for rule in rules:  # the same fit under each point rule
        est.set_params(point_prediction=rule)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            by_rule[rule] = score_tasks(est, test, case, cols, loc, scale, hide=args.hide,
                                        seed=args.seed, bins=args.bins)
        predict_s[rule] = time.perf_counter() - start
    tasks = by_rule[rules[0]]
    h = est.history_
    return {"description": case.description, "columns": cols, "loc": loc.to_dict(),
            "scale": scale.to_dict(),
            "n_train": int(train["id"].nunique()), "n_test": int(test["id"].nunique()),
            "fit_s": fit_s, "epochs": h.n_epochs, "best_epoch": h.best_epoch + 1,
            "stopped": h.stopped_reason, "tasks": tasks, "point_rules": by_rule,
            "predict_s": predict_s}


def _f(v: float) -> str:
    return f"{v:.3f}" if v >= 0.01 else f"{v:.4f}"


def markdown(results: dict[str, dict[str, Any]], rule: str | None = None) -> str:
    """One row per data set: each task's MSEs, the ratio model / best baseline, training
    (``rule``: the tasks scored under that point rule, ``--point-rules``)."""
    head = ["data set"]
    for task, methods in METHODS.items():
        head += [f"{task}: {m}" for m in methods] + [f"{task}: ratio", f"{task}: oracle"]
    head += ["forecast: reversion (data)", "epochs (best)", "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, r in results.items():
        cells = [name]
        scored = r["tasks"] if rule is None else r["point_rules"][rule]
        for task, methods in METHODS.items():
            t = scored[task]
            for m in methods:
                v = _f(t["mse"][m])
                cells.append(f"**{v}**" if m == "model" and t["ratio"] < 1 else v)
            cells.append(f"{t['ratio']:.2f}")
            cells.append("-" if t["oracle"] is None else _f(t["oracle"]))
        rev = scored["forecast"]["reversion"]
        cells += [f"{rev['model']:.2f} ({rev['data']:.2f})",
                  f"{r['epochs']} ({r['best_epoch']})", f"{r['fit_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnosis(name: str, r: dict[str, Any]) -> str:
    """The breakdowns of one data set as text (markdown tables)."""
    parts = [f"### {name}: {r['description']}"]
    for task, by in (("held-out", ("position", "gap")), ("forecast", ("gap",))):
        t = r["tasks"][task]
        methods = METHODS[task] + (("oracle",) if t["oracle"] is not None else ())
        label = "position, gap" if task == "held-out" else "horizon (gap to the last value)"
        lines = [f"{task}, {t['n']} values, MSE by {label}:", "",
                 f"| {label} | n | " + " | ".join(methods) + " |",
                 "|---" * (len(methods) + 2) + "|"]
        for rec in t["breakdown"]:
            key = ", ".join(str(rec[b]) for b in by)
            lines.append(f"| {key} | {rec['n']} | "
                         + " | ".join(_f(rec[m]) for m in methods) + " |")
        parts.append("\n".join(lines))
    rev = r["tasks"]["forecast"]["reversion"]
    parts.append(f"forecast reversion toward the training mean: model {rev['model']:.2f}, "
                 f"data {rev['data']:.2f}")
    return "\n\n".join(parts)


def _public(r: dict[str, Any]) -> dict[str, Any]:
    """``r`` without the frames (keys starting with ``_``): what ``--out`` writes."""
    if isinstance(r, dict):
        return {k: _public(v) for k, v in r.items() if not str(k).startswith("_")}
    return r


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the benchmark; return the results per data set (with the scored frames)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", choices=tuple(CASES), default=None,
                    metavar="NAME",
                    help=f"data sets (default every one of --family): {family_names()}")
    add_family_argument(ap, "without --datasets")
    ap.add_argument("--epochs", type=int, default=100, help="max_epochs (the default's 100)")
    add_seed_arguments(ap, "the data, the test split and the hidden values")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a LatentODERegressor parameter (repeatable)")
    ap.add_argument("--hide", type=float, default=0.3,
                    help="fraction of each test series' observed values hidden")
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--n-series", type=int, default=None,
                    help="series per synthetic data set (default: the suite's, 200)")
    ap.add_argument("--bins", type=int, default=4, help="gap buckets of the breakdowns")
    ap.add_argument("--breakdown", action="store_true", help="print the diagnosis per data set")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--verbose", type=int, default=0)
    add_point_rules(ap, "one table each")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.datasets is None:
        args.datasets = list(FAMILIES[args.family])
    import torch

    torch.set_num_threads(max(1, args.threads))
    shown = " ".join(list(argv) if argv is not None else sys.argv[1:])
    print(f"$ python benchmarks/quality.py {shown}".rstrip(), flush=True)
    params = parse_params(args.param)
    print(f"LatentODERegressor defaults but max_epochs={args.epochs}, "
          f"random_state={model_seed(args)}, "
          f"verbose={args.verbose}" + "".join(f", {k}={v!r}" for k, v in params.items())
          + f"; {args.threads} thread(s)", flush=True)
    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for name in args.datasets:
        r = run_case(name, args)
        results[name] = r
        t = r["tasks"]
        print(f"{name}: {r['n_train']} training / {r['n_test']} test series, {r['epochs']} "
              f"epochs (best {r['best_epoch']}, {r['stopped']}) in {r['fit_s']:.0f} s; ratio "
              f"held-out {t['held-out']['ratio']:.2f}, forecast {t['forecast']['ratio']:.2f}",
              flush=True)
    print(f"\nMSE of standardised values on the test series (held-out: {args.hide:.0%} of each "
          f"series' values hidden; forecast: the values after the cutoff); bold: the model "
          f"beats every baseline; ratio: model / best baseline; oracle: the generating process "
          f"known (posterior mean given the same visible values; the floor); reversion: slope "
          f"of the forecasts toward the training mean (0: LOCF, 1: the mean), the model's and "
          f"(in brackets) the true values'; total "
          f"{time.perf_counter() - start:.0f} s\n")
    if args.point_rules:
        for rule in args.point_rules:
            seconds = sum(r["predict_s"][rule] for r in results.values())
            print(f"\npoint_prediction={rule!r} (predict and score, all data sets: "
                  f"{seconds:.0f} s)\n")
            print(markdown(results, rule))
    else:
        print(markdown(results))
    if args.breakdown:
        for name, r in results.items():
            print("\n" + diagnosis(name, r))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"argv": shown, "params": params, "seed": args.seed,
                       "model_seed": model_seed(args),
                       "epochs": args.epochs, "results": _public(results)}, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
