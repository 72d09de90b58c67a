# ruff: noqa: E402
# A diagnosis script of #15 (docs/results/across-datasets.md, the unseen family), kept for
# reproduction; run from the repository root with the library importable (PYTHONPATH=.).
"""Extra forecast references on the held-out family (no model): a per-series straight line fitted
by least squares to the past (LOCF for a single value, the training mean for none) and, for
``trend``, the least-squares fit of the known form (level, slope, the season's sine and cosine);
scored as ``benchmarks/quality.py`` scores forecasts (same data, splits and points; MSE of values
standardised by the training series)."""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _unseen import past_line, trend_form
from calibration import UNSEEN, _forecast_rows, _test_split, make_case

from latentode.evaluation import mse

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
p.add_argument("--test-fraction", type=float, default=0.25)
a = p.parse_args()

for seed in a.seeds:
    for name, case in UNSEEN.items():
        df = make_case(case, seed)
        cols = [c for c in df.columns if c not in ("id", "t")]
        is_test = _test_split(df, a.test_fraction, seed)
        train, test = df[~is_test], df[is_test].reset_index(drop=True)
        loc, scale = train[cols].mean(), train[cols].std(ddof=0)
        lo, hi = case.time_range
        early, fut = _forecast_rows(test, cols, lo + case.cutoff * (hi - lo))
        past, future = test[early], test[fut]
        mask = future[cols].notna().to_numpy()
        out = {k: future[["id", "t"]].assign(**{c: np.nan for c in cols}) for k in ("line", "form")}
        for sid, f in future.groupby("id"):
            p_ = past[past["id"] == sid]
            tq = f["t"].to_numpy()
            for c in cols:
                pc = p_[["t", c]].dropna()
                tp, xp = pc["t"].to_numpy(), pc[c].to_numpy()
                line = form = past_line(tp, xp, tq, loc[c])
                if case.make == "trend" and len(pc) >= 4:
                    period = case.options["period"]
                    coef, *_ = np.linalg.lstsq(trend_form(tp, period), xp, rcond=None)
                    form = trend_form(tq, period) @ coef
                out["line"].loc[f.index, c] = line
                out["form"].loc[f.index, c] = form
        r = {k: mse(future, v, mask, columns=cols, loc=loc, scale=scale) for k, v in out.items()}
        print(f"seed {seed} {name}: forecast MSE, the past's straight line {r['line']:.3f}"
              + (f", the known form {r['form']:.3f}" if case.make == "trend" else ""), flush=True)
