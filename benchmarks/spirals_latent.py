"""Inside a latent ODE fitted to the spirals: its latent path and field over the future (#18).

Reads an estimator saved by ``benchmarks/spirals.py --save`` (same ``--observed`` and
``--seed``: the test series are those the benchmark scores) and prints, per group of test
series (those whose future the training windows cover, those they do not, and the latter by
direction), at window steps 0 and 99 and future steps 20, 50 and 99:

* ``|z|`` and the Mahalanobis distance of the latent state from the states of the training
  windows (and the share of series beyond the training windows' 99 % quantile of it): how far
  the forecast carries the state out of the region the decoder was trained on;
* ``|f(z)|``, the latent field's speed, and for a tanh field the share of hidden units pinned
  at +-1 (``|tanh| > 0.99``) per layer;
* the true path's speed and the decoded path's (coordinates per unit of model time);

then the radius and angle of the predicted futures against the true ones
(``spirals.future_geometry``) for what ``predict`` returns (decoder and readout) and for the
decoder alone, and with ``--rnn`` for the RNN baseline fitted on the same data.

Where the futures' error comes from, per group (:func:`error_decomposition`): the error at each
series' last observation (how well the posterior localises the state from noisy points)
against its growth over the future steps (the flow), the future's error split into that
offset carried along and the error of the displacement since the last observation, and the
RMSE per future step (beside the RNN's with ``--rnn``). With ``--samples K`` (default 30),
``K`` posterior draws of the state at the posterior's time, each solved and decoded
(:func:`posterior_spread`), decoder alone: their spread against the error of the posterior
mean's path (below 1: over-confident), and the RMSE of their mean (the predictive mean) against
that of the posterior mean's path (what ``predict`` returns with ``readout="latent"``). Last,
the training history: training and validation loss over the last epochs (still falling?).

    python benchmarks/spirals.py --observed 100 --epochs 250 --no-rnn --param \\
        early_stopping=False --save /tmp/m.latentode
    python benchmarks/spirals_latent.py /tmp/m_100.latentode --observed 100 --rnn
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
import spirals as bench  # noqa: E402

STEPS = (0, 99, 120, 150, 199)  # window steps 0 and 99, then future steps 20, 50 and 99


def _posterior(est, frame, ids, grid):
    """The conditioning batch of ``frame``'s series, the grid in model time (and repeated per
    series), and the posterior ``(mu, sigma)`` of the state where ``predict`` puts it (the
    grid's start, or with ``posterior_time="last"`` each series' last observation) at ``t0``."""
    from latentode.data import iterate_batches, pad_frame, validate_frame

    vf = validate_frame(frame, time_col="t", id_col="id", expected_targets=["x", "y"])
    assert list(vf.series_ids) == list(ids)
    cond = next(iter(iterate_batches(pad_frame(vf, est.time_encoder_, est.scaler_), len(ids))))
    model = est.model_.eval()
    mt = torch.as_tensor(est.time_encoder_.transform(grid), dtype=torch.float32)
    times = mt.expand(len(ids), -1).contiguous()
    lengths = torch.full((len(ids),), len(grid))
    with torch.no_grad():
        t0 = model._posterior_at(cond, times, lengths)
        mu, sigma = model.encode(cond, t0)
    return cond, mt, times, lengths, t0, mu, sigma


def _unscale(est, a: torch.Tensor) -> np.ndarray:
    """Decoded means ``(..., T, 2)`` in standardised units -> user units (numpy)."""
    return est.scaler_.inverse_transform(a.reshape(-1, 2).numpy()).reshape(a.shape)


def latent_paths(est, frame, ids, grid):
    """Posterior-mean latent path of each series of ``frame`` at ``grid`` (user time, the
    same for every series): ``z (B, T, D)``, decoder-alone and predicted means ``(B, T, 2)``
    in user units, and the grid in model time."""
    cond, mt, times, lengths, t0, mu, _ = _posterior(est, frame, ids, grid)
    model = est.model_
    with torch.no_grad():
        # the ODE solved from the posterior's time (both ways with posterior_time="last")
        z, _ = model.solve(mu.unsqueeze(0), t0, times, lengths)
        dec, full = model.decoder(z), model.decode(z, cond, times)
    return z[0], _unscale(est, dec[0]), _unscale(est, full[0]), mt


def posterior_samples(est, frame, ids, grid, n_samples: int, seed: int = 0) -> np.ndarray:
    """``n_samples`` draws of each series' state from its posterior, each solved over ``grid``
    and decoded by the decoder alone: ``(n_samples, B, T, 2)`` in user units (the spread of
    the latent state, without the observation noise)."""
    cond, _, times, lengths, t0, mu, sigma = _posterior(est, frame, ids, grid)
    model = est.model_
    with torch.no_grad():
        z0 = model.sample_z0(mu, sigma, n_samples, generator=torch.Generator().manual_seed(seed))
        z, _ = model.solve(z0, t0, times, lengths)
        return _unscale(est, model.decoder(z))


def error_decomposition(pred: np.ndarray, truth: np.ndarray, last: np.ndarray,
                        groups: dict[str, np.ndarray], n_window: int) -> dict[str, dict]:
    """Where the futures' error comes from, per group of series.

    ``pred`` and ``truth`` are ``(B, T, 2)`` over the window and its future (the future starts
    at step ``n_window``); ``last`` ``(B,)`` the step of each series' last observation. The
    future's error splits exactly into the offset at the last observation, carried along, and
    the error of the displacement since then (the flow's part)::

        pred_k - truth_k = (pred_l - truth_l) + ((pred_k - pred_l) - (truth_k - truth_l))

    Per non-empty group: ``at_last`` (RMSE at the last observation), ``window_end`` (at the
    window's last step), ``future`` (over the future), ``offset`` and ``flow`` (the RMS of
    the two parts over the future; ``offset**2 + flow**2 + 2 * cross = future**2``, ``cross``
    the mean of their product) and ``per_step`` (RMSE at each future step, a list).
    """
    rows = np.arange(len(pred))
    at_last = pred[rows, last] - truth[rows, last]  # (B, 2)
    err = pred[:, n_window:] - truth[:, n_window:]  # (B, F, 2)
    flow = err - at_last[:, None]
    out = {}
    for name, g in groups.items():
        if not g.any():
            continue
        off = np.broadcast_to(at_last[g][:, None], flow[g].shape)
        out[name] = {
            "n": int(g.sum()),
            "at_last": float(np.sqrt(np.mean(at_last[g] ** 2))),
            "window_end": float(np.sqrt(np.mean((pred[g, n_window - 1]
                                                 - truth[g, n_window - 1]) ** 2))),
            "future": float(np.sqrt(np.mean(err[g] ** 2))),
            "offset": float(np.sqrt(np.mean(off ** 2))),
            "flow": float(np.sqrt(np.mean(flow[g] ** 2))),
            "cross": float(np.mean(off * flow[g])),
            "per_step": np.sqrt(np.mean(err[g] ** 2, axis=(0, 2))).tolist(),
        }
    return out


def posterior_spread(samples: np.ndarray, pred: np.ndarray, truth: np.ndarray,
                     last: np.ndarray, groups: dict[str, np.ndarray],
                     n_window: int) -> dict[str, dict]:
    """The posterior's spread against the error, per group of series.

    ``samples`` ``(K, B, T, 2)``: decoded paths of ``K`` posterior draws
    (:func:`posterior_samples`); ``pred`` ``(B, T, 2)``: the posterior mean's path decoded the
    same way (what ``predict`` returns with ``readout="latent"``); ``truth`` the noise-free
    path; ``last`` the step of each series' last observation, the future from step
    ``n_window``. Per non-empty group, at the
    last observation and over the future: ``spread`` (root mean over series and coordinates
    of the draws' variance), ``error`` (RMSE of ``pred``), ``ratio`` = spread / error (below
    1: the posterior is over-confident about where the path is), and ``mean_of_draws`` (RMSE
    of the draws' mean, the Monte Carlo predictive mean).
    """
    rows = np.arange(pred.shape[0])
    var = samples.var(axis=0)  # (B, T, 2)
    mean = samples.mean(axis=0)
    parts = {"at_last": (lambda a: a[rows, last]), "future": (lambda a: a[:, n_window:])}
    out = {}
    for name, g in groups.items():
        if not g.any():
            continue
        out[name] = {}
        for part, take in parts.items():
            spread = float(np.sqrt(np.mean(take(var)[g])))
            error = float(np.sqrt(np.mean((take(pred) - take(truth))[g] ** 2)))
            out[name][part] = {
                "spread": spread, "error": error, "ratio": spread / error,
                "mean_of_draws": float(np.sqrt(np.mean((take(mean) - take(truth))[g] ** 2)))}
    return out


def history_summary(history, last: int = 20) -> dict[str, float | int | None]:
    """Is the fit still improving at its end? From an estimator's ``history_``: epochs run,
    best epoch (1-based), and for ``train_loss``, ``val_loss`` and ``val_mse`` the value at
    the best epoch, and the mean of the last ``last`` epochs minus the mean of the ``last``
    before them (``*_drop``: positive while still falling; None with fewer than ``2 * last``
    epochs or a value missing)."""
    records = history.records
    out: dict[str, float | int | None] = {"epochs": len(records),
                                          "best_epoch": history.best_epoch + 1}
    for key in ("train_loss", "val_loss", "val_mse"):
        values = np.array([np.nan if r.get(key) is None else r[key] for r in records])
        out[f"{key}_best"] = float(values[history.best_epoch])
        out[f"{key}_drop"] = (float(values[-2 * last:-last].mean() - values[-last:].mean())
                              if len(values) >= 2 * last and np.isfinite(values).all()
                              else None)
    return out


PRINT_STEPS = (0, 10, 25, 50, 75, 99)  # future steps whose RMSE is printed


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an estimator saved by benchmarks/spirals.py --save")
    ap.add_argument("--observed", type=int, required=True)
    ap.add_argument("--n-spirals", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0, help="seed of the data (as for spirals.py)")
    ap.add_argument("--rnn", action="store_true", help="also the RNN baseline's geometry and "
                    "its RMSE per future step")
    ap.add_argument("--samples", type=int, default=30,
                    help="posterior draws behind the spread and the predictive mean (0: none)")
    args = ap.parse_args(argv)
    from latentode import LatentODERegressor
    from latentode.datasets import make_spirals
    from latentode.datasets.spirals import spiral_paths

    est = LatentODERegressor.load(args.model)
    data = make_spirals(args.n_spirals, n_points=bench.N_POINTS, n_observed=args.observed,
                        noise=0.3, random_state=args.seed, n_future=bench.N_FUTURE)
    obs = data.observed
    train_ids = np.arange(args.n_train)
    test_ids = np.arange(args.n_train, args.n_spirals)
    n_win = bench.N_POINTS + bench.N_FUTURE
    start = data.start.loc[test_ids].to_numpy()
    cw = data.clockwise.loc[test_ids].to_numpy()
    inside = bench.covered(data, train_ids, test_ids)
    ts, pcw, pcc = spiral_paths()
    grid = ts[:n_win]  # times restart at 0 in every window
    truth = np.stack([(pcw if c else pcc)[s:s + n_win] for s, c in zip(start, cw)])
    z, dec, full, mt = latent_paths(est, obs[obs["id"].isin(test_ids)], test_ids, grid)
    z_train = latent_paths(est, obs[obs["id"].isin(train_ids)], train_ids, grid)[0]
    dynamics = est.model_.dynamics
    per_t = float(mt[1] - mt[0]) / (grid[1] - grid[0])  # model time per unit of t
    print(f"{args.model}: {est.dynamics_activation} field; model time: the window ends at "
          f"{float(mt[bench.N_POINTS - 1]):.3f}, the future at {float(mt[-1]):.3f}")

    def pinned(states):  # per tanh layer, the share of units at +-1, (B, T) each
        out, h = [], states
        for layer in dynamics.net:
            h = layer(h)
            if isinstance(layer, torch.nn.Tanh):
                out.append((h.abs() > 0.99).float().mean(-1).numpy())
        return out

    with torch.no_grad():
        field = dynamics(None, z).norm(dim=-1).numpy()
        hidden = pinned(z)
        window = z_train[:, :bench.N_POINTS]
        speed = float(dynamics(None, window).norm(dim=-1).median())
        layers = "".join(f", tanh layer {i} pinned {a.mean():.3f}"
                         for i, a in enumerate(pinned(window)))
        print(f"training windows: median |f(z)| {speed:.3f}{layers}")
    window_states = z_train[:, :bench.N_POINTS].reshape(-1, z.shape[-1]).numpy()
    centre = window_states.mean(0)
    icov = np.linalg.inv(np.cov(window_states.T) + 1e-6 * np.eye(z.shape[-1]))

    def mahalanobis(a):
        d = a - centre
        return np.sqrt(np.einsum("...i,ij,...j->...", d, icov, d))

    q99 = float(np.quantile(mahalanobis(window_states), 0.99))
    dist = mahalanobis(z.numpy())
    speed_true = np.linalg.norm(np.gradient(truth, grid, axis=1), axis=2) / per_t
    speed_dec = np.linalg.norm(np.gradient(dec, grid, axis=1), axis=2) / per_t
    groups = bench.series_groups(inside, cw)
    rows = {"|z|": z.norm(dim=-1).numpy(), "Mahalanobis": dist,
            "beyond train 99%": (dist > q99).astype(float), "|f(z)|": field,
            **{f"tanh layer {i} pinned": a for i, a in enumerate(hidden)},
            "speed, true": speed_true, "speed, decoded": speed_dec}
    print(f"steps {STEPS} (100: the first future step); training windows' Mahalanobis 99 % "
          f"quantile {q99:.2f}")
    report: dict = {"steps": list(STEPS), "groups": {}}
    for name, g in groups.items():
        if not g.any():
            continue
        print(f"-- {name} ({int(g.sum())} series), medians")
        report["groups"][name] = {}
        for label, values in rows.items():
            med = [float(np.median(values[g, s])) for s in STEPS]
            report["groups"][name][label] = med
            print(f"   {label:<22}" + " ".join(f"{v:8.3f}" for v in med))
    fut = slice(bench.N_POINTS, None)
    for label, pred in (("predict (decoder and readout)", full), ("decoder alone", dec)):
        geo = bench.future_geometry(pred[:, fut], truth[:, fut], cw, inside)
        report[label] = geo
        print(f"{label}:")
        bench.print_geometry(geo, indent="   ")
    if args.rnn:
        rnn = bench._rnn_module().GapRNNForecaster(seed=args.seed, **bench.RNN_DEFAULTS).fit(
            obs[obs["id"].isin(train_ids)], value_cols=["x", "y"])
        future = data.future[data.future["id"].isin(test_ids)]
        pred = rnn.predict(obs[obs["id"].isin(test_ids)], future[["id", "t"]])
        geo = bench.future_geometry(pred[["x", "y"]].to_numpy().reshape(len(test_ids), -1, 2),
                                    truth[:, fut], cw, inside)
        report["RNN baseline"] = geo
        print("RNN baseline:")
        bench.print_geometry(geo, indent="   ")
        rnn_err = (pred[["x", "y"]].to_numpy().reshape(len(test_ids), -1, 2)
                   - truth[:, fut]) ** 2
    # the error at the last observation against its growth over the future (what predict
    # returns), the posterior's spread, and the training history
    t_obs = obs[obs["id"].isin(test_ids)].groupby("id")["t"].max().loc[test_ids].to_numpy()
    last = np.abs(grid[None, :bench.N_POINTS] - t_obs[:, None]).argmin(axis=1)
    groups = {"all": np.ones(len(test_ids), bool), **groups}
    decomp = error_decomposition(full, truth, last, groups, bench.N_POINTS)
    report["decomposition"] = decomp
    print(f"error decomposition (predict; the last observation at window step "
          f"{np.median(last):.0f} in the median): RMSE at the last observation / at the window's "
          f"end / over the future = offset carried along (+) flow's displacement error; RMSE at "
          f"future steps {PRINT_STEPS}")
    for name, d in decomp.items():
        line = (f"   {name} ({d['n']}): {d['at_last']:.3f} / {d['window_end']:.3f} / "
                f"{d['future']:.3f} = {d['offset']:.3f} (+) {d['flow']:.3f} "
                f"(cross {d['cross']:+.4f}); per step "
                + " ".join(f"{d['per_step'][k]:.3f}" for k in PRINT_STEPS))
        if args.rnn:
            g = groups[name]
            rnn_steps = np.sqrt(rnn_err[g].mean(axis=(0, 2)))
            d["rnn_per_step"] = rnn_steps.tolist()
            line += ("; RNN " + f"{np.sqrt(rnn_err[g].mean()):.3f}, per step "
                     + " ".join(f"{rnn_steps[k]:.3f}" for k in PRINT_STEPS))
        print(line)
    if args.samples:
        draws = posterior_samples(est, obs[obs["id"].isin(test_ids)], test_ids, grid,
                                  args.samples)
        spread = posterior_spread(draws, dec, truth, last, groups, bench.N_POINTS)
        report["spread"] = spread
        print(f"posterior spread over {args.samples} draws / RMSE of the posterior mean's "
              f"path = ratio; RMSE of the draws' mean (all decoder alone):")
        for name, parts in spread.items():
            print(f"   {name}: " + "; ".join(
                f"{part} {v['spread']:.3f} / {v['error']:.3f} = {v['ratio']:.2f}, mean of "
                f"draws {v['mean_of_draws']:.3f}" for part, v in parts.items()))
    hist = history_summary(est.history_)
    report["history"] = hist
    print("history: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in hist.items()))
    return report


if __name__ == "__main__":
    main()
