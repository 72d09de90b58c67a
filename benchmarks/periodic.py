"""The Latent ODE paper's periodic toy: reconstruction and held-out interpolation (issue #18).

Data: :func:`latentode.datasets.make_periodic` (``--n-series`` noisy sinusoids of 100 irregular
points on ``[0, 5]``, frequency 0.4 to 0.8: 2 to 4 periods per window, noise std 0.01).
``--n-train`` series train the model; on the others it reports

* reconstruction: the MSE of the model conditioned on all of a series' observations, at those
  observations (the paper's "reconstruction"), against the observed values, beside the
  variance of the values (what the channel mean scores);
* held-out interpolation: 50 % of each test series' values hidden, the model conditioned on
  the rest and scored on the hidden ones, beside linear interpolation, LOCF and the series'
  mean on the same points (:mod:`latentode.evaluation`).

    python benchmarks/periodic.py --epochs 150
    python benchmarks/periodic.py --epochs 150 --param linear_term=True --param time_scale=1.25
    python benchmarks/periodic.py --epochs 30 --point-rules posterior_mean predictive_mean

``--param name=value`` (repeatable) sets any :class:`~latentode.LatentODERegressor` parameter
(values parsed as Python literals); everything else stays at the estimator's defaults, except
``max_epochs`` (``--epochs``), ``random_state`` and ``verbose``. ``--point-rules`` scores each
point-prediction rule (``point_prediction``) on the same fit, one row each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
from _cli import add_point_rules, parse_params  # noqa: E402


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit on the training series; the reconstruction and held-out figures of the others."""
    import torch

    from latentode import LatentODERegressor
    from latentode.datasets import make_periodic
    from latentode.evaluation import channel_mean, hide_values, linear_interpolation, locf, mse

    torch.set_num_threads(args.threads)
    df = make_periodic(args.n_series, args.n_points, random_state=args.seed)
    col = [c for c in df.columns if c not in ("id", "t")]
    train, test = df[df["id"] < args.n_train], df[df["id"] >= args.n_train]
    params = parse_params(args.param)
    est = LatentODERegressor(**{"max_epochs": args.epochs, "random_state": args.seed,
                                "verbose": args.verbose, **params})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est.fit(train, time_col="t", id_col="id")
    fit_s = time.perf_counter() - start
    cond, hidden = hide_values(test, 0.5, columns=col, random_state=args.seed + 1)
    rules: dict[str, dict[str, float]] = {}
    for rule in args.point_rules or [est.point_prediction]:  # the same fit under each rule
        est.set_params(point_prediction=rule)
        tic = time.perf_counter()
        rules[rule] = {"reconstruction": mse(test, est.predict(test), columns=col),
                       "held_out": mse(test, est.predict(cond), hidden, columns=col),
                       "predict_s": time.perf_counter() - tic}
    first = rules[next(iter(rules))]
    recon = first["reconstruction"]
    held = {
        "model": first["held_out"],
        "linear": mse(test, linear_interpolation(cond, columns=col), hidden, columns=col),
        "LOCF": mse(test, locf(cond, columns=col), hidden, columns=col),
        "mean": mse(test, channel_mean(cond, columns=col), hidden, columns=col),
    }
    hist = est.history_
    return {"reconstruction": recon, "variance": float(test[col].to_numpy().var()),
            "held_out": held, "fit_s": fit_s, "epochs": hist.n_epochs,
            "best_epoch": hist.best_epoch, "threads": args.threads, "params": params,
            "point_rules": rules}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-series", type=int, default=1000)
    ap.add_argument("--n-points", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--verbose", type=int, default=0)
    add_point_rules(ap, "one row each")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if not 0 < args.n_train < args.n_series:
        ap.error("--n-train must be between 0 and --n-series (exclusive)")
    r = run(args)
    h = r["held_out"]
    print(f"periodic toy, {args.n_series - args.n_train} test series; fit {r['fit_s']:.0f} s, "
          f"{r['epochs']} epochs (best {r['best_epoch'] + 1}), {r['threads']} thread(s), "
          f"settings {r['params'] or 'defaults'}")
    print("| task | latent ODE | linear interpolation | LOCF | series mean / variance |")
    print("|---|---|---|---|---|")
    print(f"| reconstruction MSE | {r['reconstruction']:.4f} | - | - | {r['variance']:.4f} |")
    print(f"| held-out MSE (50 % hidden) | {h['model']:.4f} | {h['linear']:.4f} | "
          f"{h['LOCF']:.4f} | {h['mean']:.4f} |")
    if args.point_rules:
        print("\n| point_prediction | reconstruction MSE | held-out MSE | predict s |")
        print("|---|---|---|---|")
        for rule, v in r["point_rules"].items():
            print(f"| {rule} | {v['reconstruction']:.4f} | {v['held_out']:.4f} | "
                  f"{v['predict_s']:.1f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(r, fh, indent=2)
    return r


if __name__ == "__main__":
    main()
