"""The Neural ODE paper's spirals (Chen et al. 2018, Table 2): extrapolation RMSE (issue #18).

Data: :func:`latentode.datasets.make_spirals` (1,000 spirals, half clockwise; a window of 100
grid steps, ``--observed`` of them observed with noise std 0.3; target: the noise-free path at
the next 100 steps). ``--n-train`` series train the model, the rest are scored: each test series
is conditioned on its observations and predicted at its future times (rows with NaN values in
the frame passed to ``predict``). RMSE over both coordinates of every future point, beside the
paper's RNN baseline (a GRU that reads each observation with the time gap to the previous one,
``benchmarks/_rnn_baseline.py``, extrapolated by feeding its own predictions back), LOCF (the
last observation carried forward) and the published figures.

    python benchmarks/spirals.py                         # 30, 50 and 100 observed points
    python benchmarks/spirals.py --observed 30 --epochs 100 --param latent_dim=6
    python benchmarks/spirals.py --rnn-only              # the RNN and LOCF columns alone
    python benchmarks/spirals.py --rnn-only --rnn-tune   # RNN settings picked by validation
    python benchmarks/spirals.py --observed 100 --no-rnn --load m.latentode \\
        --point-rules posterior_mean predictive_mean     # a --save'd fit under both rules

``--param name=value`` (repeatable) sets any :class:`~latentode.LatentODERegressor` parameter
(values parsed as Python literals); everything else stays at the estimator's defaults, except
``max_epochs`` (``--epochs``), ``random_state`` and ``verbose``. ``--rnn-param name=value``
sets a ``GapRNNForecaster`` parameter over ``RNN_DEFAULTS``; ``--no-rnn`` drops that column.
``--then EPOCHS --then-param name=value`` continues the fit for ``EPOCHS`` more epochs with
``warm_start=True`` and those settings (a learning rate that is constant, then decays:
``--epochs 300 --then 100 --then-param lr_decay=0.977``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
from _cli import add_point_rules, add_seed_arguments, model_seed, parse_params  # noqa: E402

N_POINTS, N_FUTURE = 100, 100  # grid steps of each window and of its future (the paper's)
PAPER = {30: (0.3937, 0.1642), 50: (0.3202, 0.1502), 100: (0.1813, 0.1346)}  # (RNN, Latent ODE)
#: the RNN baseline's settings (benchmarks/_rnn_baseline.py, GapRNNForecaster), picked with
#: ``--rnn-tune`` by the validation split of the training spirals (README "Spirals")
RNN_DEFAULTS: dict[str, Any] = {"hidden": 32, "head_units": 32, "residual": True, "epochs": 200,
                                "lr": 1e-2, "lr_decay": 0.98, "batch_size": 50}
#: the settings ``--rnn-tune`` compares, as changes to RNN_DEFAULTS (every one tried so far)
RNN_GRID: list[dict[str, Any]] = [
    {},
    {"epochs": 100},
    {"lr": 3e-3, "lr_decay": 0.99},
    {"epochs": 100, "hidden": 64, "head_units": 64},
    {"epochs": 100, "hidden": 25, "head_units": 0},  # a linear read-out of 25 units
    {"epochs": 100, "residual": False},
    {"epochs": 100, "lr_decay": 1.0},
    {"epochs": 400},
    {"hidden": 64, "head_units": 64},
    {"batch_size": 25},
]
#: ``--rnn-tune`` takes the first setting of RNN_GRID whose validation RMSE is within this of
#: the best one: the spread of that figure over seeds of the weights (0.3272 to 0.3331 for
#: three seeds of one setting at 30 observed points) makes smaller differences noise
RNN_TUNE_TOL = 0.005


def locf_rmse(observed: pd.DataFrame, future: pd.DataFrame) -> float:
    """RMSE of carrying each series' last observation forward over its future."""
    from latentode.evaluation import locf

    pred = locf(observed, future[["id", "t"]], columns=["x", "y"])
    return float(np.sqrt(np.mean((pred[["x", "y"]].to_numpy()
                                  - future[["x", "y"]].to_numpy()) ** 2)))


def _rnn_module() -> Any:
    """``benchmarks/_rnn_baseline.py``, loaded from beside this file (script or test)."""
    name = "latentode_bench_rnn_baseline"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parent / "_rnn_baseline.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def rnn_validation_rmse(train: pd.DataFrame, settings: dict[str, Any], *, seed: int = 0,
                        fraction: float = 0.2) -> float:
    """Validation RMSE of the RNN baseline, from the training spirals alone.

    ``fraction`` of the training series (drawn with ``seed``) are held out; the RNN is trained
    on the others, conditioned on each held-out series' observations in the first half of its
    window and scored on its (noisy) observations in the second half, extrapolated as the test
    futures are. Test series take no part, so settings picked by this figure are not fitted to
    the test RMSE.
    """
    rnn = _rnn_module()
    ids = pd.unique(train["id"])
    held = np.random.default_rng(seed).choice(ids, size=max(1, int(fraction * len(ids))),
                                              replace=False)
    is_val = train["id"].isin(held)
    val = train[is_val]
    half = 0.5 * (val["t"].min() + val["t"].max())
    cond, target = val[val["t"] < half], val[val["t"] >= half]
    both = np.intersect1d(cond["id"].unique(), target["id"].unique())
    cond, target = cond[cond["id"].isin(both)], target[target["id"].isin(both)]
    model = rnn.GapRNNForecaster(**{"seed": seed, **settings}).fit(
        train[~is_val], value_cols=["x", "y"])
    pred = model.predict(cond, target[["id", "t"]])
    return float(np.sqrt(np.mean((pred[["x", "y"]].to_numpy()
                                  - target[["x", "y"]].to_numpy()) ** 2)))


def run_rnn(train: pd.DataFrame, test_obs: pd.DataFrame, test_fut: pd.DataFrame,
            settings: dict[str, Any], seed: int, inside: np.ndarray) -> dict[str, Any]:
    """Fit the GRU-with-time-gaps baseline on ``train``; RMSE of its extrapolated futures.

    ``inside`` marks the rows of ``test_fut`` whose series' whole future lies where training
    windows reach (``rnn_covered``: the RMSE over those).
    """
    rnn = _rnn_module()
    model = rnn.GapRNNForecaster(**{"seed": seed, **settings}).fit(train, value_cols=["x", "y"])
    pred = model.predict(test_obs, test_fut[["id", "t"]])
    err = (pred[["x", "y"]].to_numpy() - test_fut[["x", "y"]].to_numpy()) ** 2
    rmse = float(np.sqrt(np.mean(err)))
    covered = float(np.sqrt(np.mean(err[inside]))) if inside.any() else float("nan")
    return {"rnn": rmse, "rnn_covered": covered,
            "rnn_fit_s": model.fit_s_, "rnn_final_loss": model.losses_[-1],
            "rnn_settings": model.get_params()}


def tune_rnn(train: pd.DataFrame, base: dict[str, Any], seed: int) -> tuple[dict[str, Any],
                                                                          list[dict[str, Any]]]:
    """Pick the RNN's settings among ``RNN_GRID`` by :func:`rnn_validation_rmse`.

    The pick is the first setting (in ``RNN_GRID``'s order) within ``RNN_TUNE_TOL`` of the
    lowest validation RMSE.
    """
    rows = []
    for change in RNN_GRID:
        settings = {**base, **change}
        rows.append({"settings": settings, "val_rmse": rnn_validation_rmse(train, settings,
                                                                           seed=seed)})
        print(f"  RNN validation {rows[-1]['val_rmse']:.4f}  {change}", flush=True)
    lowest = min(r["val_rmse"] for r in rows)
    best = next(r for r in rows if r["val_rmse"] <= lowest + RNN_TUNE_TOL)
    return best["settings"], rows


def run(n_observed: int, args: argparse.Namespace, params: dict[str, Any],
        rnn_params: dict[str, Any] | None = None,
        then_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row of the table: the latent ODE (unless ``--rnn-only``), the RNN and LOCF.

    With ``args.then`` (``--then EPOCHS``) the fitted estimator trains that many more epochs
    (``warm_start=True``: a fresh optimiser, no KL warm-up) with ``then_params`` set over
    ``params``; ``fit_s`` covers both legs, the history runs on across them.
    """
    then_params = then_params or {}
    import torch

    from latentode import LatentODERegressor
    from latentode.datasets import make_spirals

    data = make_spirals(args.n_spirals, n_points=N_POINTS, n_observed=n_observed, noise=0.3,
                        random_state=args.seed, n_future=N_FUTURE)
    train_ids = np.arange(args.n_train)
    obs, fut = data.observed, data.future
    train = obs[obs["id"].isin(train_ids)]
    test_obs = obs[~obs["id"].isin(train_ids)]
    test_fut = fut[~fut["id"].isin(train_ids)]
    inside = covered(data, train_ids, test_fut["id"])  # per row of test_fut
    truth = test_fut[["x", "y"]].to_numpy()
    result: dict[str, Any] = {
        "observed": n_observed, "rmse": None, "rmse_covered": None,
        "locf": locf_rmse(test_obs, test_fut),
        "paper_rnn": PAPER.get(n_observed, (None, None))[0],
        "paper_latent_ode": PAPER.get(n_observed, (None, None))[1],
    }
    if args.rnn:
        settings = {**RNN_DEFAULTS, **(rnn_params or {})}
        if args.rnn_tune:
            settings, result["rnn_validation"] = tune_rnn(train, settings, args.seed)
        result.update(run_rnn(train, test_obs, test_fut, settings, args.seed, inside))
    if args.rnn_only:
        return result
    cls = LatentODERegressor
    if args.dynamics_init == "torch":
        class cls(LatentODERegressor):  # noqa: N801 - an experiment, not an API
            """The estimator with torch's default init of the latent dynamics' linear layers."""

            def _build_model(self, n_channels, *args, **kwargs):
                model = super()._build_model(n_channels, *args, **kwargs)
                for m in model.dynamics.modules():
                    if isinstance(m, torch.nn.Linear):
                        m.reset_parameters()
                return model

    start = time.perf_counter()
    if args.load:  # a saved fit, scored as it is (PATH_<observed>.<ext>, as --save writes)
        est = LatentODERegressor.load(_per_count(args.load, n_observed))
    else:
        est = cls(**{"max_epochs": args.epochs, "random_state": model_seed(args),
                     "verbose": args.verbose, **params})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est.fit(train, time_col="t", id_col="id")
    if args.then:  # a second leg: the schedule changes once, late (e.g. constant, then decay)
        est.set_params(warm_start=True, max_epochs=args.then, kl_warmup=None, **then_params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est.fit(train, time_col="t", id_col="id")
    fit_s = time.perf_counter() - start
    query = pd.concat([test_obs, test_fut.assign(x=np.nan, y=np.nan)], ignore_index=True)
    is_future = np.r_[np.zeros(len(test_obs), bool), np.ones(len(test_fut), bool)]
    by_rule: dict[str, dict[str, float]] = {}
    for rule in args.point_rules or [est.point_prediction]:  # the same fit under each rule
        est.set_params(point_prediction=rule)
        got = est.predict(query).loc[is_future, ["x", "y"]].to_numpy()
        sq = (got - truth) ** 2
        by_rule[rule] = {"rmse": float(np.sqrt(sq.mean())),
                         "rmse_covered": float(np.sqrt(sq[inside].mean()))}
    # the table, the diagnosis and the plot: the last rule's
    rmse, rmse_inside = by_rule[rule]["rmse"], by_rule[rule]["rmse_covered"]
    if args.plot:
        _plot(est, test_obs, test_fut, n_observed, args.plot)
    if args.diagnose:
        result.update(diagnose(est, data, test_obs, test_fut, got, inside))
    if args.save:
        saved = _per_count(args.save, n_observed)
        est.save(saved)
        print(f"saved the fitted estimator to {saved}")
    hist = est.history_
    result.update({
        "rmse": rmse, "rmse_covered": rmse_inside,
        "fit_s": fit_s, "epochs": hist.n_epochs, "best_epoch": hist.best_epoch,
        "stopped": hist.stopped_reason, "threads": torch.get_num_threads(),
        "params": {**{k: v for k, v in est.get_params().items() if k in params},
                   **({"dynamics_init": "torch"} if args.dynamics_init == "torch" else {}),
                   **({"then": {"epochs": args.then, **then_params}} if args.then else {}),
                   **({"load": _per_count(args.load, n_observed)} if args.load else {})},
        "lr_by_epoch": [r.get("lr") for r in hist.records], "point_rules": by_rule,
    })
    return result


def _per_count(path: str, n_observed: int) -> str:
    """``PATH_<observed>.<ext>`` (or ``PATH_<observed>``): where ``--save`` writes the fit of
    one observed count, ``--load`` reads it and ``--plot`` draws it. Only the file name's
    extension moves (a dot in a folder's name or a leading ``./`` is not one)."""
    root, ext = os.path.splitext(path)
    return f"{root}_{n_observed}{ext}"


def covered(data: Any, train_ids: np.ndarray, ids: Any) -> np.ndarray:
    """Per entry of ``ids`` (series ids of ``data``, a make_spirals result): whether the whole
    future of the series lies inside the part of the spirals the training windows of
    ``train_ids`` cover (the later the start, the more of a future lies beyond every training
    window)."""
    covered_to = int(data.start[train_ids].max()) + N_POINTS  # end of the last training window
    return data.start.loc[ids].to_numpy() + N_POINTS + N_FUTURE <= covered_to


#: centres of make_spirals' clockwise and counter-clockwise spirals (spiral_paths)
CENTRES = {True: (-5.0, 0.0), False: (5.0, 0.0)}


def series_groups(inside: np.ndarray, clockwise: np.ndarray) -> dict[str, np.ndarray]:
    """The groups of test series the diagnoses report, as boolean masks: ``covered``
    (``inside``: the whole future lies where training windows reach), ``uncovered``, and the
    uncovered ones by direction (``uncovered cw`` / ``uncovered ccw``)."""
    return {"covered": inside, "uncovered": ~inside, "uncovered cw": ~inside & clockwise,
            "uncovered ccw": ~inside & ~clockwise}


def print_geometry(geometry: dict[str, dict[str, float]], indent: str = "  ") -> None:
    """Print :func:`future_geometry`'s figures, a line per group."""
    for name, g in geometry.items():
        print(f"{indent}{name} ({g['n']} series): RMSE {g['rmse']:.3f}; predicted / true radius "
              f"at the end {g['radius_end']:.2f}, radius growth {g['radius_growth']:.2f}, "
              f"angle travelled {g['angle']:.2f}", flush=True)


def future_geometry(pred: np.ndarray, truth: np.ndarray, clockwise: np.ndarray,
                    inside: np.ndarray) -> dict[str, dict[str, float]]:
    """Radius and angle of the predicted futures against the true ones, per group of series.

    ``pred`` and ``truth`` are ``(n_series, n_future, 2)``; the radius and the (unwrapped)
    angle are taken around each series' spiral centre (:data:`CENTRES`). Groups:
    :func:`series_groups`. Per group: the number
    of series, the RMSE, and medians over its series of ``radius_end`` (predicted / true
    radius at the last step), ``radius_growth`` (predicted / true change of the radius over
    the future: 1 keeps the spiral's growth, 0 a circle, below 0 a shrinking path) and
    ``angle`` (predicted / true angle travelled: below 1, the rotation slows down). Empty
    groups are left out.
    """
    centre = np.array([CENTRES[bool(c)] for c in clockwise])[:, None, :]

    def polar(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = a - centre
        return (np.linalg.norm(d, axis=2),
                np.unwrap(np.arctan2(d[..., 1], d[..., 0]), axis=1))

    (r, th), (rt, tht) = polar(pred), polar(truth)
    out = {}
    for name, g in series_groups(inside, clockwise).items():
        if g.any():
            out[name] = {
                "n": int(g.sum()),
                "rmse": float(np.sqrt(np.mean((pred[g] - truth[g]) ** 2))),
                "radius_end": float(np.median(r[g, -1] / rt[g, -1])),
                "radius_growth": float(np.median((r[g, -1] - r[g, 0])
                                                 / (rt[g, -1] - rt[g, 0]))),
                "angle": float(np.median((th[g, -1] - th[g, 0]) / (tht[g, -1] - tht[g, 0]))),
            }
    return out


def diagnose(est: Any, data: Any, test_obs: pd.DataFrame, test_fut: pd.DataFrame,
             got: np.ndarray, inside: np.ndarray | None = None) -> dict[str, Any]:
    """Where the future's error comes from: the fit inside the window against the noise-free
    path at every window step, the RMSE per tenth of the future, how fast the predicted
    path moves against the true one (median ratio of step lengths at the future's first,
    middle and last step: below 1, the learned flow slows down) and, with ``inside`` (the
    rows of ``test_fut`` whose series' future the training windows cover), its radius and
    angle against the true ones per group of series (:func:`future_geometry`)."""
    from latentode.datasets.spirals import spiral_paths

    ts, cw, cc = spiral_paths()
    ids = pd.unique(test_fut["id"])
    rows = [pd.DataFrame({"id": i, "t": ts[:N_POINTS],
                          **dict(zip("xy", (cw if data.clockwise[i] else cc)[
                              data.start[i]:data.start[i] + N_POINTS].T))}) for i in ids]
    window = pd.concat(rows, ignore_index=True)
    with warnings.catch_warnings():  # window steps that were observed repeat those rows
        warnings.simplefilter("ignore", UserWarning)
        pred = est.predict(pd.concat([test_obs, window.assign(x=np.nan, y=np.nan)],
                                     ignore_index=True)).iloc[len(test_obs):]
    win_rmse = float(np.sqrt(np.mean((pred[["x", "y"]].to_numpy()
                                      - window[["x", "y"]].to_numpy()) ** 2)))
    err = ((got - test_fut[["x", "y"]].to_numpy()) ** 2).reshape(len(ids), N_FUTURE, 2)
    deciles = [float(np.sqrt(err[:, k:k + N_FUTURE // 10].mean()))
               for k in range(0, N_FUTURE, N_FUTURE // 10)]

    def step(a: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.diff(a.reshape(len(ids), N_FUTURE, 2), axis=1), axis=2)

    ratio = step(got) / step(test_fut[["x", "y"]].to_numpy())
    speed = [float(np.median(ratio[:, k])) for k in (0, (N_FUTURE - 1) // 2, N_FUTURE - 2)]
    print(f"  {len(ids)} test series: window RMSE (noise-free) {win_rmse:.4f}; future RMSE by "
          f"tenth {' '.join(f'{d:.3f}' for d in deciles)}; speed ratio (first / middle / last "
          f"step) {' / '.join(f'{v:.3f}' for v in speed)}", flush=True)
    result = {"window_rmse": win_rmse, "rmse_by_tenth": deciles, "speed_ratio": speed}
    if inside is not None:
        shape = (len(ids), N_FUTURE, 2)
        geometry = future_geometry(got.reshape(shape), test_fut[["x", "y"]].to_numpy().reshape(
            shape), data.clockwise.loc[ids].to_numpy(), inside.reshape(len(ids), N_FUTURE)[:, 0])
        print_geometry(geometry)
        result["geometry"] = geometry
    return result


def _plot(est: Any, obs: pd.DataFrame, fut: pd.DataFrame, n_observed: int, path: str) -> None:
    """Two test spirals: observations, noise-free future, predictive mean and band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentode import plot_forecast

    ids = list(pd.unique(obs["id"]))[:2]
    fig, axes = plt.subplots(2, 2, figsize=(11, 5), sharex=True)
    for col, sid in enumerate(ids):
        plot_forecast(est, obs, sid, horizon=float(fut["t"].max() - obs.loc[
            obs["id"] == sid, "t"].max()), truth=fut, ax=axes[:, col])
    fig.suptitle(f"spirals, {n_observed} observed points per window: the future is the "
                 "noise-free path (truth)")
    fig.tight_layout()
    out = _per_count(path, n_observed)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--observed", type=int, nargs="+", default=[30, 50, 100])
    ap.add_argument("--n-spirals", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--dynamics-init", choices=("small", "torch"), default="small",
                    help="experiment: 'torch' re-initialises the latent dynamics' linear layers "
                    "with torch's default (uniform, 1/sqrt(fan_in)) instead of the library's "
                    "N(0, 0.1^2) weights and zero biases")
    ap.add_argument("--rnn", action=argparse.BooleanOptionalAction, default=True,
                    help="the GRU-with-time-gaps baseline column (benchmarks/_rnn_baseline.py)")
    ap.add_argument("--rnn-only", action="store_true",
                    help="skip the latent ODE: the RNN and LOCF columns only")
    ap.add_argument("--rnn-param", action="append", default=[], metavar="NAME=VALUE",
                    help="a GapRNNForecaster setting (repeatable), over RNN_DEFAULTS")
    ap.add_argument("--rnn-tune", action="store_true",
                    help="pick the RNN's settings among RNN_GRID by a validation split of the "
                    "training spirals (rnn_validation_rmse) before scoring the test series")
    add_seed_arguments(ap, "the data")
    ap.add_argument("--diagnose", action="store_true",
                    help="also print the in-window RMSE, the RMSE per tenth of the future and "
                    "the predicted path's speed against the true one")
    ap.add_argument("--then", type=int, default=0, metavar="EPOCHS",
                    help="experiment: after the --epochs fit, train EPOCHS more epochs "
                    "(warm_start=True: a fresh optimiser at lr, no KL warm-up) with the "
                    "--then-param settings, e.g. --then 100 --then-param lr_decay=0.977: a "
                    "constant learning rate, then a decay over the last EPOCHS")
    ap.add_argument("--then-param", action="append", default=[], metavar="NAME=VALUE",
                    help="an estimator setting (repeatable) for the --then leg")
    ap.add_argument("--verbose", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--save", default=None, metavar="PATH",
                    help="save each fitted estimator (PATH_<observed>.<ext>; "
                    "LatentODERegressor.load reads it)")
    ap.add_argument("--load", default=None, metavar="PATH",
                    help="score the estimators --save wrote (PATH_<observed>.<ext>) instead of "
                    "fitting (with --no-rnn: the latent ODE column alone)")
    add_point_rules(ap, "one line each; the table shows the last")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="plot two test spirals per observed count (PNG_<observed>.png)")
    args = ap.parse_args(argv)
    if args.rnn_only and not args.rnn:
        ap.error("--rnn-only and --no-rnn leave nothing but LOCF to run")
    params, rnn_params = parse_params(args.param), parse_params(args.rnn_param)
    then_params = parse_params(args.then_param)
    if then_params and not args.then:
        ap.error("--then-param sets the --then leg's settings: give --then EPOCHS")
    if args.load and (args.rnn_only or args.then or params):
        ap.error("--load scores a saved fit as it is: no --rnn-only, --then or --param")
    results = []
    print("| observed | latent ODE RMSE | covered futures | RNN | LOCF | paper RNN "
          "| paper latent ODE | fit s | RNN fit s | epochs (best) | settings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.observed:
        r = run(n, args, params, rnn_params, then_params)
        results.append(r)
        epochs = "-" if r["rmse"] is None else f"{r['epochs']} ({r['best_epoch'] + 1})"
        fit_s = "-" if r["rmse"] is None else f"{r['fit_s']:.0f}"
        rnn_fit = f"{r['rnn_fit_s']:.0f}" if args.rnn else "-"
        rnn_cell = f"{r['rnn']:.4f} ({r['rnn_covered']:.4f})" if args.rnn else "-"
        print(f"| {n} | {_fmt(r['rmse'])} | {_fmt(r['rmse_covered'])} | {rnn_cell} "
              f"| {r['locf']:.3f} | {r['paper_rnn']} | {r['paper_latent_ode']} | {fit_s} "
              f"| {rnn_fit} | {epochs} | {'-' if args.rnn_only else r['params'] or 'defaults'}"
              " |", flush=True)
        for rule, v in r.get("point_rules", {}).items() if args.point_rules else []:
            print(f"  point_prediction={rule!r}: RMSE {v['rmse']:.4f}, covered futures "
                  f"{v['rmse_covered']:.4f}", flush=True)
    if args.rnn:
        print("RNN column: RMSE over all test futures (over the covered futures only)")
        used = {r["observed"]: {k: v for k, v in r["rnn_settings"].items()
                                if k != "n_threads"} for r in results}
        print(f"RNN settings per observed count: {used}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
