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

Usage::

    python benchmarks/calibration.py                       # a few minutes on 2 CPU cores
    python benchmarks/calibration.py --dataset periodic --noise 0.1 --epochs 60
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from latentode import LatentODERegressor
from latentode.datasets import make_damped_oscillators, make_periodic
from latentode.evaluation import coverage, crps_gaussian, hide_values, mse, sample_crps
from latentode.uncertainty import central_interval

LEVELS = (0.5, 0.9)


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
                   seed: int) -> pd.DataFrame:
    """Append ``copies`` truncated copies of every series (new ids), cut at a uniform time in
    the middle 30-90 % of the time range; copies with fewer than 2 rows are dropped."""
    rng = np.random.default_rng(seed)
    ids = train["id"].unique()
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


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the benchmark; return the table (rows: tasks)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    p.add_argument("--latent-dim", type=int, default=6)
    p.add_argument("--solver", choices=("rk4", "dopri5", "euler"), default="rk4")
    p.add_argument("--prefixes", type=int, default=1,
                   help="training copies of each series truncated at a random time (teaches "
                        "the encoder to condition on a prefix, as extrapolation does); 0: none")
    p.add_argument("--obs-dropout", type=float, default=0.0,
                   help="fraction of observed values hidden from the encoder in training")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    start = time.perf_counter()
    df, truth, time_range = _data(args)
    cols = [c for c in df.columns if c not in ("id", "t")]
    ids = df["id"].unique()
    rng = np.random.default_rng(args.seed + 1)
    test_ids = rng.choice(ids, size=max(1, int(round(args.test_fraction * len(ids)))),
                          replace=False)
    is_test = df["id"].isin(test_ids).to_numpy()
    train, test, test_truth = df[~is_test], df[is_test], truth[is_test]
    train = _with_prefixes(train, args.prefixes, time_range, args.seed + 3)

    est = LatentODERegressor(
        latent_dim=args.latent_dim, rec_dim=24, units=48, n_layers=1, gru_units=48,
        encoder="gru", gradient="backprop", solver=args.solver, max_epochs=args.epochs,
        batch_size=32, lr=1e-2, kl_warmup=5, patience=args.patience, device="cpu",
        n_jobs=max(1, args.threads),
        random_state=args.seed, verbose=args.verbose, obs_dropout=args.obs_dropout,
    )
    est.fit(train)
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
    early = (test["t"] < cut).to_numpy()
    past = test[early]
    has_past = test["id"].isin(past.loc[past[cols].notna().any(axis=1), "id"]).to_numpy()
    fut_rows = ~early & has_past
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
