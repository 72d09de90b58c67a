"""The README quick start's estimator on each device: s/epoch side by side (issue #14).

Fits ``LatentODERegressor(latent_dim=8)`` (every other parameter at its default: ODE-RNN
encoder, dopri5, adjoint, batch 50) on the bundled PhysioNet sample's ``HR``, ``MAP``, ``Temp``
for ``--epochs`` epochs on each device and prints the training loop's seconds per epoch (mean of
the epochs after the first, which also pays warm-up and CUDA-graph capture; validation included)
and the whole ``fit``.

    python benchmarks/estimator_speed.py                 # cpu, and cuda when present
    python benchmarks/estimator_speed.py --device cpu --epochs 5 --gradient backprop
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from latentode import LatentODERegressor
from latentode.datasets import load_physionet_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="device or comma-separated list")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--gradient", default="adjoint", choices=("adjoint", "backprop"))
    ap.add_argument("--n-jobs", type=int, default=None, help="CPU threads (default 1)")
    args = ap.parse_args()
    if args.device == "auto":
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    else:
        devices = [d.strip() for d in args.device.split(",")]
    df = load_physionet_sample()[["id", "t", "HR", "MAP", "Temp"]]
    print(f"README quick start: latent_dim=8, gradient={args.gradient}, {args.epochs} epochs, "
          f"n_jobs={args.n_jobs}, torch {torch.__version__}")
    print("| device | s/epoch (after the first) | first epoch s | fit s | final train loss |")
    print("|---|---|---|---|---|")
    for dev in devices:
        est = LatentODERegressor(latent_dim=8, max_epochs=args.epochs, early_stopping=False,
                                 gradient=args.gradient, device=dev, n_jobs=args.n_jobs,
                                 random_state=0, verbose=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the sample's empty series
            est.fit(df, time_col="t", id_col="id")
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        total = time.perf_counter() - start
        sec = [float(s) for s in est.history_["seconds"]]
        steady = float(np.mean(sec[1:])) if len(sec) > 1 else sec[0]
        print(f"| {dev} | {steady:.2f} | {sec[0]:.2f} | {total:.1f} | "
              f"{est.history_['train_loss'][-1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
