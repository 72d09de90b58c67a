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


def latent_paths(est, frame, ids, grid):
    """Posterior-mean latent path of each series of ``frame`` at ``grid`` (user time, the
    same for every series): ``z (B, T, D)``, decoder-alone and predicted means ``(B, T, 2)``
    in user units, and the grid in model time."""
    from latentode.data import iterate_batches, pad_frame, validate_frame

    vf = validate_frame(frame, time_col="t", id_col="id", expected_targets=["x", "y"])
    assert list(vf.series_ids) == list(ids)
    cond = next(iter(iterate_batches(pad_frame(vf, est.time_encoder_, est.scaler_), len(ids))))
    model = est.model_.eval()
    mt = torch.as_tensor(est.time_encoder_.transform(grid), dtype=torch.float32)
    times = mt.expand(len(ids), -1).contiguous()
    lengths = torch.full((len(ids),), len(grid))
    with torch.no_grad():
        # where predict puts the posterior: the grid's start, or with posterior_time="last"
        # each series' last observation (the ODE then solved both ways from there)
        t0 = model._posterior_at(cond, times, lengths)
        mu, _ = model.encode(cond, t0)
        z, _ = model.solve(mu.unsqueeze(0), t0, times, lengths)
        dec, full = model.decoder(z), model.decode(z, cond, times)

    def unscale(a):
        return est.scaler_.inverse_transform(a[0].reshape(-1, 2).numpy()).reshape(
            len(ids), len(grid), 2)

    return z[0], unscale(dec), unscale(full), mt


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an estimator saved by benchmarks/spirals.py --save")
    ap.add_argument("--observed", type=int, required=True)
    ap.add_argument("--n-spirals", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0, help="seed of the data (as for spirals.py)")
    ap.add_argument("--rnn", action="store_true", help="also the RNN baseline's geometry")
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
    return report


if __name__ == "__main__":
    main()
