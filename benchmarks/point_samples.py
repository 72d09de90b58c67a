"""Monte Carlo error of ``point_prediction="predictive_mean"`` against ``point_samples``.

Fits the library's defaults on data sets of the quality suite (the same data, split and
hidden values as ``quality.py``), then predicts the held-out values and the forecasts of the
test series with the predictive mean of ``S`` points: the fixed antithetic points
(:func:`latentode.nn.model.point_noise`, "fixed"), antithetic points of ``--repeats`` other
seeds ("anti", RMS over them) and ``S`` independent posterior draws ("iid", the former rule,
RMS over ``--repeats`` seeds); it reports the RMS (standardised units) of their difference
from a ``--reference``-point antithetic reference, beside the RMS gap between the two rules
(posterior-mean path vs reference) that the estimate resolves.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/point_samples.py --datasets osc-sparse oscillators \
        --epochs 100 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import SUITE, _forecast_rows, _test_split, make_case  # noqa: E402


def _rms(a: np.ndarray, ref: np.ndarray) -> float:
    ok = np.isfinite(ref)
    return float(np.sqrt(np.mean((a[ok] - ref[ok]) ** 2)))


def measure(name: str, args: argparse.Namespace) -> list[dict[str, object]]:
    """Fit one data set of :data:`SUITE`; RMS errors of both estimates per task."""
    from latentode import LatentODERegressor
    from latentode.data import build_query
    from latentode.evaluation import hide_values
    from latentode.nn import model as point_model

    seed = point_model.POINT_NOISE_SEED

    case = SUITE[name]
    df = make_case(case, args.seed)
    cols = [c for c in df.columns if c not in ("id", "t")]
    is_test = _test_split(df, 0.25, args.seed)
    train, test = df[~is_test], df[is_test].reset_index(drop=True)
    scale = train[cols].std(ddof=0).to_numpy()
    est = LatentODERegressor(max_epochs=args.epochs, random_state=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est.fit(train, time_col="t", id_col="id")
    cond, _ = hide_values(test, 0.3, columns=cols, random_state=args.seed + 2)
    lo, hi = case.time_range
    early, fut = _forecast_rows(test, cols, lo + case.cutoff * (hi - lo))
    past, query = test[early], test[fut][["id", "t"]]

    def run(rule: str, s: int, task: str) -> np.ndarray:
        est.set_params(point_prediction=rule, point_samples=s)
        out = est.predict(cond) if task == "held-out" else est.extrapolate(past, times=query)
        return out[cols].to_numpy(np.float64) / scale

    def iid(s: int, task: str, seed: int) -> np.ndarray:
        frame, q = (cond, None) if task == "held-out" else (past, query)
        prepared = est._prepare(frame)
        qq = (None if q is None
              else build_query(frame, prepared[0], est.time_encoder_, times=q))
        smp = est._predict_samples(frame, qq, prepared=prepared, n_samples=s,
                                   use_mean=False, random_state=seed)
        return smp.mean.mean(0) / scale

    rows = []
    for task in ("held-out", "forecast"):
        ref = run("predictive_mean", args.reference, task)
        path = run("posterior_mean", 1, task)
        row = {"data set": name, "task": task, "rules apart": _rms(path, ref)}
        for s in args.samples:
            row[f"fixed {s}"] = _rms(run("predictive_mean", s, task), ref)
            anti = []
            for r in range(args.repeats):  # other seeds of the antithetic points
                point_model.POINT_NOISE_SEED = 100 + r
                anti.append(_rms(run("predictive_mean", s, task), ref))
            point_model.POINT_NOISE_SEED = seed
            row[f"anti {s}"] = float(np.sqrt(np.mean(np.square(anti))))
            row[f"iid {s}"] = float(np.sqrt(np.mean(
                [_rms(iid(s, task, 100 + r), ref) ** 2 for r in range(args.repeats)])))
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["osc-sparse", "oscillators"])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--reference", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=4, help="seeds of the independent draws")
    args = ap.parse_args()
    for name in args.datasets:
        print(pd.DataFrame(measure(name, args)).to_string(index=False, float_format="%.4f"),
              flush=True)


if __name__ == "__main__":
    main()
