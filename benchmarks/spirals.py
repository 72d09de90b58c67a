"""The Neural ODE paper's spirals (Chen et al. 2018, Table 2): extrapolation RMSE (issue #18).

Data: :func:`latentode.datasets.make_spirals` (1,000 spirals, half clockwise; a window of 100
grid steps, ``--observed`` of them observed with noise std 0.3; target: the noise-free path at
the next 100 steps). ``--n-train`` series train the model, the rest are scored: each test series
is conditioned on its observations and predicted at its future times (rows with NaN values in
the frame passed to ``predict``). RMSE over both coordinates of every future point, beside LOCF
(the last observation carried forward) and the published figures.

    python benchmarks/spirals.py                         # 30, 50 and 100 observed points
    python benchmarks/spirals.py --observed 30 --epochs 100 --param latent_dim=6

``--param name=value`` (repeatable) sets any :class:`~latentode.LatentODERegressor` parameter
(values parsed as Python literals); everything else stays at the estimator's defaults, except
``max_epochs`` (``--epochs``), ``random_state`` and ``verbose``.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

N_POINTS, N_FUTURE = 100, 100  # grid steps of each window and of its future (the paper's)
PAPER = {30: (0.3937, 0.1642), 50: (0.3202, 0.1502), 100: (0.1813, 0.1346)}  # (RNN, Latent ODE)


def locf_rmse(observed: pd.DataFrame, future: pd.DataFrame) -> float:
    """RMSE of carrying each series' last observation forward over its future."""
    from latentode.evaluation import locf

    pred = locf(observed, future[["id", "t"]], columns=["x", "y"])
    return float(np.sqrt(np.mean((pred[["x", "y"]].to_numpy()
                                  - future[["x", "y"]].to_numpy()) ** 2)))


def run(n_observed: int, args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
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

    est = cls(**{"max_epochs": args.epochs, "random_state": args.seed,
                 "verbose": args.verbose, **params})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est.fit(train, time_col="t", id_col="id")
    fit_s = time.perf_counter() - start
    query = pd.concat([test_obs, test_fut.assign(x=np.nan, y=np.nan)], ignore_index=True)
    pred = est.predict(query)
    is_future = np.r_[np.zeros(len(test_obs), bool), np.ones(len(test_fut), bool)]
    got = pred.loc[is_future, ["x", "y"]].to_numpy()
    truth = test_fut[["x", "y"]].to_numpy()
    rmse = float(np.sqrt(np.mean((got - truth) ** 2)))
    # futures that stay inside the part of the spirals the training windows cover (the later
    # the start, the more of a future lies beyond every training window)
    covered_to = int(data.start[train_ids].max()) + N_POINTS  # end of the last training window
    future_end = data.start.loc[test_fut["id"]].to_numpy() + N_POINTS + N_FUTURE
    inside = future_end <= covered_to  # the whole future lies where training windows reach
    rmse_inside = float(np.sqrt(np.mean((got[inside] - truth[inside]) ** 2)))
    if args.plot:
        _plot(est, test_obs, test_fut, n_observed, args.plot)
    hist = est.history_
    return {
        "observed": n_observed, "rmse": rmse, "rmse_covered": rmse_inside,
        "locf": locf_rmse(test_obs, test_fut),
        "paper_rnn": PAPER.get(n_observed, (None, None))[0],
        "paper_latent_ode": PAPER.get(n_observed, (None, None))[1],
        "fit_s": fit_s, "epochs": hist.n_epochs, "best_epoch": hist.best_epoch,
        "stopped": hist.stopped_reason, "threads": torch.get_num_threads(),
        "params": {**{k: v for k, v in est.get_params().items() if k in params},
                   **({"dynamics_init": "torch"} if args.dynamics_init == "torch" else {})},
    }


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
    stem, dot, ext = path.rpartition(".")
    out = f"{stem}_{n_observed}.{ext}" if dot else f"{path}_{n_observed}"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="plot two test spirals per observed count (PNG_<observed>.png)")
    args = ap.parse_args(argv)
    params = {}
    for item in args.param:
        name, _, value = item.partition("=")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    results = []
    print("| observed | latent ODE RMSE | covered futures | LOCF | paper RNN | paper latent ODE "
          "| fit s | epochs (best) | settings |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.observed:
        r = run(n, args, params)
        results.append(r)
        print(f"| {n} | {r['rmse']:.4f} | {r['rmse_covered']:.4f} | {r['locf']:.3f} | "
              f"{r['paper_rnn']} | "
              f"{r['paper_latent_ode']} | {r['fit_s']:.0f} | {r['epochs']} ({r['best_epoch'] + 1})"
              f" | {r['params'] or 'defaults'} |", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
