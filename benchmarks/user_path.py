"""CPU cost of what a user runs, phase by phase: fit (data, training, calibration), predict,
quantiles, extrapolate, sample, score, save / load.

Times are CPU seconds of this process (``time.process_time``; far less sensitive than wall
time to other jobs on a shared machine), with the wall seconds beside them, on ``--threads``
torch threads (default 1; also the estimator's ``n_jobs``). ``fit`` is split into its data
preparation (DataFrame -> tensors, everything before the training loop), the training loop
(``training.fit_model``: the epochs with their validation) and the calibration of the
predictive spread (``training.calibrate_spread``); what is left of ``fit`` (the fitted state)
is the "fit, other" row.

    python benchmarks/user_path.py                                  # bundled 300-stay sample
    python benchmarks/user_path.py --data physionet --n-stays 2000 --epochs 1
    python benchmarks/user_path.py --data periodic --n-series 500 --n-points 1000 --epochs 1
    python benchmarks/user_path.py --classifier                     # LatentODEClassifier
    python benchmarks/user_path.py --profile out/profile            # + cProfile per phase
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parse_params  # noqa: E402

import latentode  # noqa: E402
import latentode.datasets  # noqa: E402
import latentode.estimator as _est  # noqa: E402
from latentode import LatentODEClassifier, LatentODERegressor  # noqa: E402

PHYSIONET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "physionet2012"


class Phases:
    """CPU and wall seconds per named phase (accumulated), optionally cProfiled."""

    def __init__(self, profile_dir: Path | None = None, top: int = 25) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.profile_dir = profile_dir
        self.top = top
        self._active: list[str] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        prof = cProfile.Profile() if self.profile_dir is not None and not self._active else None
        self._active.append(name)
        c0, w0 = time.process_time(), time.perf_counter()
        if prof is not None:
            prof.enable()
        try:
            yield
        finally:
            if prof is not None:
                prof.disable()
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0
            self._active.pop()
            if prof is not None:
                self._dump(name, prof)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed as the phase ``name`` (a sub-phase when called inside another)."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.sub(name):
                return fn(*args, **kwargs)
        return timed

    @contextlib.contextmanager
    def sub(self, name: str) -> Iterator[None]:
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0

    def _dump(self, name: str, prof: cProfile.Profile) -> None:
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        slug = name.replace(" ", "_").replace("(", "").replace(")", "").replace("=", "")
        prof.dump_stats(self.profile_dir / f"{slug}.prof")
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(self.top)
        stats.sort_stats("cumulative").print_stats(self.top)
        (self.profile_dir / f"{slug}.txt").write_text(buf.getvalue())


def load_data(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.Series | None, str]:
    """The frame to fit, the per-stay labels (``--classifier``) and a description."""
    labels = None
    if args.data == "sample":
        df, outcomes = latentode.datasets.load_physionet_sample(return_outcomes=True)
        desc = "bundled PhysioNet sample"
    elif args.data == "physionet":
        df, outcomes = latentode.datasets.load_physionet2012(
            args.physionet, n_stays=args.n_stays, return_outcomes=True)
        desc = f"PhysioNet 2012, {args.n_stays} stays"
    else:
        df = latentode.datasets.make_periodic(args.n_series, args.n_points, random_state=0)
        outcomes = None
        desc = f"periodic toy, {args.n_series} series x {args.n_points} points"
    if args.data != "periodic":
        cols = args.channels.split(",")
        df = df[["id", "t", *cols]]
        if args.classifier:
            labels = outcomes["In-hospital_death"]
    elif args.classifier:
        raise SystemExit("--classifier needs PhysioNet data (--data sample or physionet)")
    return df, labels, desc


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit and call the estimator phase by phase; print the table and return its figures."""
    torch.set_num_threads(args.threads)
    df, labels, desc = load_data(args)
    n_series = df["id"].nunique()
    print(f"{desc}: {n_series} series, {len(df)} rows, {df.shape[1] - 2} channels; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; latentode from "
          f"{Path(latentode.__file__).parent}")
    phases = Phases(None if args.profile is None else Path(args.profile))
    cls = LatentODEClassifier if args.classifier else LatentODERegressor
    params = dict(max_epochs=args.epochs, random_state=args.seed, verbose=0, n_jobs=args.threads,
                  early_stopping=False)
    params.update(parse_params(args.param))
    est = cls(**params)
    fit_model, calibrate = _est._fit_model, _est.calibrate_spread
    _est._fit_model = phases.wrap("fit: training loop", fit_model)
    _est.calibrate_spread = phases.wrap("fit: calibration", calibrate)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # series without the chosen channels
            with phases("fit"):
                if args.classifier:
                    y = labels.rename_axis("id")
                    est.fit(df, y, time_col="t", id_col="id")
                else:
                    est.fit(df, time_col="t", id_col="id")
            if args.classifier:
                with phases("predict_proba"):
                    est.predict_proba(df)
                with phases("score"):
                    est.score(df, labels.rename_axis("id"))
            else:
                with phases("predict"):
                    est.predict(df)
                with phases("predict(quantiles)"):
                    est.predict(df, quantiles=(0.05, 0.5, 0.95))
                with phases("extrapolate(horizon)"):
                    est.extrapolate(df, horizon=args.horizon)
                with phases(f"sample(n_samples={args.n_samples})"):
                    est.sample(df, n_samples=args.n_samples)
                with phases("score"):
                    est.score(df)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.latentode")
                with phases("save"):
                    est.save(path)
                with phases("load"):
                    cls.load(path)
    finally:
        _est._fit_model, _est.calibrate_spread = fit_model, calibrate
    cpu, wall = phases.cpu, phases.wall
    inner = ("fit: training loop", "fit: calibration")
    fit_other = cpu["fit"] - sum(cpu.get(k, 0.0) for k in inner)
    epochs = len(est.history_.records)
    print(f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())}); "
          f"{epochs} epoch(s)")
    print("| phase | CPU s | wall s |")
    print("|---|---|---|")
    for name in cpu:
        if name == "fit":
            print(f"| fit | {cpu['fit']:.2f} | {wall['fit']:.2f} |")
            for k in inner:
                if k in cpu:
                    extra = f" ({cpu[k] / epochs:.2f} per epoch)" if k == inner[0] else ""
                    print(f"| {k}{extra} | {cpu[k]:.2f} | {wall[k]:.2f} |")
            print(f"| fit: data and other | {fit_other:.2f} | "
                  f"{wall['fit'] - sum(wall.get(k, 0.0) for k in inner):.2f} |")
        elif name not in inner:
            print(f"| {name} | {cpu[name]:.2f} | {wall[name]:.2f} |")
    print(f"| total | {sum(cpu[k] for k in cpu if k not in inner):.2f} | "
          f"{sum(wall[k] for k in wall if k not in inner):.2f} |")
    if args.profile:
        print(f"cProfile per phase: {args.profile}/*.txt (and .prof)")
    return {"cpu": dict(cpu), "wall": dict(wall), "epochs": epochs, "n_series": n_series,
            "n_rows": len(df), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` (default ``sys.argv[1:]``) and :func:`run`."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sample", choices=("sample", "physionet", "periodic"))
    ap.add_argument("--physionet", default=str(PHYSIONET), help="PhysioNet 2012 archive path")
    ap.add_argument("--n-stays", type=int, default=2000, help="--data physionet")
    ap.add_argument("--n-series", type=int, default=500, help="--data periodic")
    ap.add_argument("--n-points", type=int, default=1000, help="--data periodic")
    ap.add_argument("--channels", default="HR,MAP,Temp", help="PhysioNet channels")
    ap.add_argument("--classifier", action="store_true", help="LatentODEClassifier, mortality")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--horizon", type=float, default=12.0)
    ap.add_argument("--n-samples", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="another estimator parameter (repeatable)")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="write a cProfile of each phase to DIR")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
