"""End-to-end demo on the bundled PhysioNet 2012 sample (``make demo``).

Run as ``python -m latentode.demo --out out/demo_forecast.png``. It

1. loads the 300 ICU stays shipped with latentode and keeps a few well-observed vital signs;
2. splits the stays into training and test stays;
3. fits a small :class:`~latentode.LatentODERegressor` on the training stays;
4. on the test stays, scores
   * interpolation: 20 % of the observed values are hidden, the model conditions on the rest,
   * extrapolation: the model conditions on the first 24 h and forecasts the last 24 h,
   against naive baselines of :mod:`latentode.evaluation` (linear interpolation in time, last
   value carried forward, the first day's mean), as mean squared errors of z-scored values
   (per-channel mean / std of the training stays, so channels weigh equally; a stay without a
   value of a channel is predicted the training mean);
5. writes a PNG of one test stay's forecast with a 90 % predictive band (5 % and 95 %
   quantiles of the predictive mixture over posterior trajectory samples and observation
   noise), drawn with :func:`latentode.plot_forecast`.

It is sized to finish in a few minutes on two CPU cores (GRU encoder, fixed-step RK4 solver).
``--point-rules posterior_mean predictive_mean`` scores both point predictions
(``point_prediction``) of the same fit, one row "Latent ODE (<rule>)" each, with the wall time
of each rule's ``predict`` and ``extrapolate``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from latentode.evaluation import channel_mean, hide_values, linear_interpolation, locf, mse
from latentode.nn.model import POINT_PREDICTIONS

__all__ = ["main", "CHANNELS"]

#: vital signs used by the demo (the best-observed continuous channels of the sample)
CHANNELS = ["HR", "MAP", "SysABP", "Temp", "RespRate"]
CUTOFF_H = 24.0  # extrapolation: condition on t < 24 h, forecast t >= 24 h
#: the estimator's forecast training options, passed on only when given (None: its default)
FORECAST_OPTIONS = ("forecast_share", "readout_sides", "forecast_noise", "forecast_mode")


def add_forecast_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of :data:`FORECAST_OPTIONS` to ``parser`` (the demo's and
    ``benchmarks/physionet.py``'s): ``--forecast-share``, ``--readout-sides``,
    ``--forecast-noise`` / ``--no-forecast-noise`` and ``--forecast-mode``, each None unless
    given (:func:`given_forecast_options`: the estimator's default)."""
    from latentode.nn.readout import READOUT_SIDES
    from latentode.training.objective import FORECAST_MODES

    parser.add_argument("--forecast-share", type=float, default=None,
                        help="the estimator's forecast_share: share of the training series "
                             "conditioned on a past only, split at a random point of its "
                             "forecast_range, at each step (default: the estimator's)")
    parser.add_argument("--readout-sides", choices=READOUT_SIDES, default=None,
                        help="the estimator's readout_sides: whether the readout's one-sided "
                             "queries (forecasts) have their own parameters (default: the "
                             "estimator's)")
    parser.add_argument("--forecast-noise", action=argparse.BooleanOptionalAction, default=None,
                        help="the estimator's forecast_noise: the values training forecasts "
                             "(--forecast-share, forecast_split) scored under a learned noise of "
                             "their own (default: the estimator's)")
    parser.add_argument("--forecast-mode", choices=FORECAST_MODES, default=None,
                        help="the estimator's forecast_mode: whether the series --forecast-share "
                             "picks forecast instead of (swap) or beside (add) their "
                             "reconstruction (default: the estimator's)")


def given_forecast_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :data:`FORECAST_OPTIONS` given on the command line (absent or None: left
    to the estimator's default), as keyword arguments of the estimator."""
    return {name: value for name in FORECAST_OPTIONS
            if (value := getattr(args, name, None)) is not None}


def _split_stays(df: pd.DataFrame, test_fraction: float, seed: int):
    ids = np.sort(df["id"].unique())
    rng = np.random.default_rng(seed)
    test_ids = rng.choice(ids, size=max(1, int(round(test_fraction * len(ids)))), replace=False)
    is_test = df["id"].isin(test_ids)
    return df[~is_test], df[is_test]


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
    from latentode.nn.dynamics import DYNAMICS_ACTIVATIONS
    from latentode.nn.registry import LIKELIHOODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo_forecast.png", help="PNG to write")
    parser.add_argument("--epochs", type=int, default=30, help="maximum training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the small model gains nothing from more, and "
                             "extra threads slow it down badly on a busy machine)")
    parser.add_argument("--readout", choices=("latent", "neighbours"), default="neighbours",
                        help="the estimator's readout of the means (see LatentODERegressor)")
    parser.add_argument("--readout-aux", type=float, default=1.0,
                        help="the estimator's readout_aux: weight of the decoder's own "
                             "likelihood beside the readout's")
    parser.add_argument("--readout-reach", choices=("window", "spacing"), default="window",
                        help="the estimator's readout_reach: where the reach of the readout's "
                             "correction starts")
    parser.add_argument("--obs-dropout", type=float, default=0.0,
                        help="the estimator's obs_dropout: fraction of values hidden from the "
                             "encoder at each training step")
    parser.add_argument("--dynamics-activation", choices=tuple(DYNAMICS_ACTIVATIONS),
                        default="tanh",
                        help="the estimator's dynamics_activation: the hidden non-linearity of "
                             "the latent vector field")
    parser.add_argument("--likelihood", choices=LIKELIHOODS, default="gaussian",
                        help="the estimator's likelihood: the observation model of the values")
    add_forecast_arguments(parser)
    parser.add_argument("--point-rules", nargs="+", default=None, metavar="RULE",
                        choices=POINT_PREDICTIONS,
                        help="score these point_prediction rules on the same fit (default: the "
                             "estimator's)")
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
        n_jobs=max(1, args.threads), readout=args.readout, obs_dropout=args.obs_dropout,
        readout_aux=args.readout_aux, readout_reach=args.readout_reach,
        dynamics_activation=args.dynamics_activation, likelihood=args.likelihood,
        **given_forecast_options(args),
    )
    est.fit(train)
    h = est.history_
    best = "none" if h.best_epoch is None else h.best_epoch + 1  # counted from 1, like the bar
    print(f"fitted {h.n_epochs} epochs in {time.perf_counter() - start:.0f} s "
          f"(best epoch {best} of {h.n_epochs}, stopped: {h.stopped_reason}, "
          f"device {est.device_}).")

    mean, std = train[CHANNELS].mean(), train[CHANNELS].std()
    ev = dict(columns=CHANNELS, fallback=mean)  # baselines: no value in a stay -> training mean

    def score(pred: pd.DataFrame, truth: pd.DataFrame, mask: np.ndarray) -> float:
        return mse(truth, pred, mask, columns=CHANNELS, loc=mean, scale=std)

    # interpolation: hidden values inside each test stay
    cond, hidden = hide_values(test, 0.2, columns=CHANNELS, random_state=args.seed + 1)
    # extrapolation: condition on the first day, forecast the second
    past = test[test["t"] < CUTOFF_H]
    future = test[(test["t"] >= CUTOFF_H) & test["id"].isin(past["id"].unique())]
    target = future[CHANNELS].notna().to_numpy()
    query = future[["id", "t"]]
    interp, extrap = {}, {}
    for rule in args.point_rules or [est.point_prediction]:  # the same fit under each rule
        name = "Latent ODE" if args.point_rules is None else f"Latent ODE ({rule})"
        est.set_params(point_prediction=rule)
        tic = time.perf_counter()
        interp[name] = score(est.predict(cond), test, hidden)
        mid = time.perf_counter()
        extrap[name] = score(est.extrapolate(past, times=query), future, target)
        if args.point_rules is not None:
            print(f"point_prediction={rule!r}: predict {mid - tic:.2f} s, extrapolate "
                  f"{time.perf_counter() - mid:.2f} s")
    interp.update({
        "linear interpolation": score(linear_interpolation(cond, **ev), test, hidden),
        "last value carried forward": score(locf(cond, **ev), test, hidden),
    })
    extrap.update({
        "last value carried forward": score(locf(past, query, **ev), future, target),
        "first-day mean": score(channel_mean(past, query, **ev), future, target),
    })

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
