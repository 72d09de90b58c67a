"""End-to-end demo on the bundled PhysioNet 2012 sample (``make demo``).

Run as ``python -m latentode.demo --out out/demo_forecast.png``. It

1. loads the 300 ICU stays shipped with latentode and keeps a few well-observed vital signs;
2. splits the stays into training and test stays;
3. fits a small :class:`~latentode.LatentODERegressor` on the training stays;
4. on the test stays, scores
   * interpolation: 20 % of the observed values are hidden, the model conditions on the rest,
   * extrapolation: the model conditions on the first 24 h and forecasts the last 24 h,
   against naive baselines computed with pandas (linear interpolation in time and last value
   carried forward), as mean squared errors of z-scored values (per-channel mean / std of the
   training stays, so channels weigh equally);
5. writes a PNG of one test stay's forecast with a 90 % predictive band (5 % and 95 %
   quantiles of the predictive mixture over posterior trajectory samples and observation
   noise), drawn with :func:`latentode.plot_forecast`.

It is sized to finish in a few minutes on two CPU cores (GRU encoder, fixed-step RK4 solver).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["main", "CHANNELS"]

#: vital signs used by the demo (the best-observed continuous channels of the sample)
CHANNELS = ["HR", "MAP", "SysABP", "Temp", "RespRate"]
CUTOFF_H = 24.0  # extrapolation: condition on t < 24 h, forecast t >= 24 h


def _split_stays(df: pd.DataFrame, test_fraction: float, seed: int):
    ids = np.sort(df["id"].unique())
    rng = np.random.default_rng(seed)
    test_ids = rng.choice(ids, size=max(1, int(round(test_fraction * len(ids)))), replace=False)
    is_test = df["id"].isin(test_ids)
    return df[~is_test], df[is_test]


def _hide(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Hide ``fraction`` of the observed values, keeping each stay's first observed row."""
    rng = np.random.default_rng(seed)
    observed = df[CHANNELS].notna().to_numpy()
    hidden = observed & (rng.random(observed.shape) < fraction)
    hidden[~df.duplicated("id").to_numpy()] = False
    cond = df.copy()
    cond[CHANNELS] = cond[CHANNELS].mask(hidden)
    return cond, hidden


def _linear_interpolation(cond: pd.DataFrame) -> pd.DataFrame:
    """Per stay and channel: linear in time, constant beyond the first / last observation."""
    def one(g: pd.DataFrame) -> pd.DataFrame:
        filled = g.set_index("t")[CHANNELS].interpolate(method="index", limit_direction="both")
        return filled.set_axis(g.index)

    return cond.groupby("id", group_keys=False)[["t", *CHANNELS]].apply(one)


def _locf(cond: pd.DataFrame) -> pd.DataFrame:
    """Per stay and channel: last value carried forward (first value carried backward)."""
    return cond.groupby("id", group_keys=False)[CHANNELS].apply(lambda g: g.ffill().bfill())


def _mse(pred: pd.DataFrame, truth: pd.DataFrame, mask: np.ndarray, mean, std) -> float:
    """MSE of z-scored values over ``mask``; missing predictions fall back to the mean (z=0)."""
    p = ((pred[CHANNELS] - mean) / std).fillna(0.0).to_numpy()
    y = ((truth[CHANNELS] - mean) / std).to_numpy()
    return float(np.mean((p[mask] - y[mask]) ** 2))


def _plot(est, test: pd.DataFrame, out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = test[test["t"] < CUTOFF_H].groupby("id")[CHANNELS].count()
    stay = counts.min(axis=1).add(counts.sum(axis=1) / 1e3).idxmax()  # every channel seen
    rows = test[test["id"] == stay]
    cond = rows[rows["t"] < CUTOFF_H]
    future = rows[rows["t"] >= CUTOFF_H]
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)

    from latentode import plot_forecast

    # 5 %-95 % predictive quantiles: the central 90 % band
    last = cond.loc[cond[CHANNELS].notna().any(axis=1), "t"].max()
    fig = plot_forecast(est, cond, id=stay, horizon=48.0 - last, channels=CHANNELS,
                        quantiles=(0.05, 0.95), time_unit="h")
    for ax, ch in zip(fig.axes, CHANNELS):
        ax.plot(future["t"], future[ch], "x", color="C3", label="held out (future)")
    fig.axes[0].legend(loc="upper left", fontsize=7, ncol=3)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(stay)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the demo; return ``{"interpolation": {...}, "extrapolation": {...}}`` MSEs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo_forecast.png", help="PNG to write")
    parser.add_argument("--epochs", type=int, default=30, help="maximum training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the small model gains nothing from more, and "
                             "extra threads slow it down badly on a busy machine)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))

    from latentode import LatentODERegressor
    from latentode.datasets import load_physionet_sample

    start = time.perf_counter()
    df = load_physionet_sample()[["id", "t", *CHANNELS]]
    df = df[df[CHANNELS].notna().any(axis=1)].reset_index(drop=True)
    train, test = _split_stays(df, 0.2, args.seed)
    # test stays need an observed first day to be forecast
    has_day1 = test.groupby("id")["t"].transform("min") < CUTOFF_H
    test = test[has_day1]
    print(f"PhysioNet 2012 sample: {df['id'].nunique()} stays, channels {', '.join(CHANNELS)}; "
          f"{train['id'].nunique()} training / {test['id'].nunique()} test stays.")

    est = LatentODERegressor(
        latent_dim=12, rec_dim=24, units=48, n_layers=1, gru_units=48, encoder="gru",
        gradient="backprop", solver="rk4", n_traj_samples=3, max_epochs=args.epochs,
        batch_size=32, lr=1e-2, kl_warmup=5, validation_fraction=0.1, patience=6,
        device=args.device, random_state=args.seed, verbose=args.verbose,
        n_jobs=max(1, args.threads),
    )
    est.fit(train)
    h = est.history_
    best = "none" if h.best_epoch is None else h.best_epoch + 1  # counted from 1, like the bar
    print(f"fitted {h.n_epochs} epochs in {time.perf_counter() - start:.0f} s "
          f"(best epoch {best} of {h.n_epochs}, stopped: {h.stopped_reason}, "
          f"device {est.device_}).")

    mean, std = train[CHANNELS].mean(), train[CHANNELS].std()

    # interpolation: hidden values inside each test stay
    cond, hidden = _hide(test, 0.2, args.seed + 1)
    interp = {
        "Latent ODE": _mse(est.predict(cond), test, hidden, mean, std),
        "linear interpolation": _mse(_linear_interpolation(cond), test, hidden, mean, std),
        "last value carried forward": _mse(_locf(cond), test, hidden, mean, std),
    }

    # extrapolation: condition on the first day, forecast the second
    past = test[test["t"] < CUTOFF_H]
    future = test[(test["t"] >= CUTOFF_H) & test["id"].isin(past["id"].unique())]
    target = future[CHANNELS].notna().to_numpy()
    forecast = est.extrapolate(past, times=future[["id", "t"]])
    last = past.groupby("id")[CHANNELS].last()  # last observed value per channel
    day1_mean = past.groupby("id")[CHANNELS].mean()
    extrap = {
        "Latent ODE": _mse(forecast, future, target, mean, std),
        "last value carried forward": _mse(last.reindex(future["id"]).set_axis(future.index),
                                           future, target, mean, std),
        "first-day mean": _mse(day1_mean.reindex(future["id"]).set_axis(future.index),
                               future, target, mean, std),
    }

    table = pd.DataFrame({
        "interpolation MSE": pd.Series(interp),
        "extrapolation MSE": pd.Series(extrap),
    })
    print(f"\nTest stays, MSE of z-scored values ({int(hidden.sum())} hidden values; "
          f"{int(target.sum())} values after {CUTOFF_H:g} h):")
    print(table.to_string(float_format=lambda x: f"{x:.3f}", na_rep="-"))
    print(f"\ntest score (mean IWAE log-likelihood per observed value): {est.score(test):.3f}")
    stay = _plot(est, test, args.out)
    print(f"wrote {args.out} (stay {stay}); total {time.perf_counter() - start:.0f} s")
    return {"interpolation": interp, "extrapolation": extrap}


if __name__ == "__main__":
    main()
