# ruff: noqa: E402, E501, B023, E731
# A diagnosis script of #15 (docs/results/calibration.md, "The remaining misses"), kept for reproduction; run from the repository
# root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1.
"""Leak-free validation pool demo: the estimator's own split (mimicked), validation = originals
without copies; training = the other originals, each with a truncated copy, plus second copies to
keep the count. Compare with the suite's protocol on the same test series."""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibration as cb

import latentode.estimator as E
from latentode.data import split_series
from latentode.evaluation import hide_values, mse
from latentode.utils import draw_seed

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("seed", type=int)
a = p.parse_args()
torch.set_num_threads(1)
# the suite's settings (its command line's defaults), 60 epochs
ns = cb.build_parser().parse_args(["--epochs", "60", "--seed", str(a.seed)])
case = cb.SUITE[a.name]
seed = a.seed
df = cb.make_case(case, seed)
cols = [c for c in df.columns if c not in ("id", "t")]
is_test = cb._test_split(df, 0.25, seed)
orig, test = df[~is_test], df[is_test]
n_total = len(cb._with_prefixes(orig, 1, case.time_range, seed + 3)["id"].unique())
sd = np.random.SeedSequence(draw_seed(seed)).generate_state(3)
tr_pos, va_pos = split_series(n_total, 0.1, np.random.default_rng(sd[0]))
rng = np.random.default_rng(seed + 11)
oids = orig["id"].unique()
val_o = rng.choice(oids, size=len(va_pos), replace=False)
tr_o = orig[~orig["id"].isin(val_o)]
c1 = cb._with_prefixes(tr_o, 1, case.time_range, seed + 3)  # originals + one copy each
need = len(tr_pos) - c1["id"].nunique()
extra_src = tr_o[tr_o["id"].isin(rng.choice(tr_o["id"].unique(), size=need, replace=False))]
c2 = cb._with_prefixes(extra_src, 1, case.time_range, seed + 13)
c2 = c2[c2["id"] > extra_src["id"].max()]  # the copies only
c2["id"] = c2["id"] + int(c1["id"].max()) + 1
train_pool = pd.concat([c1, c2], ignore_index=True)
assert train_pool["id"].nunique() == len(tr_pos), (train_pool["id"].nunique(), len(tr_pos))
# relabel: training series at the training positions, validation originals at the others
new = np.empty(n_total, dtype=object)
parts = []
for pos, sid in zip(tr_pos, train_pool["id"].unique()):
    part = train_pool[train_pool["id"] == sid].copy()
    part["id"] = int(pos)
    parts.append(part)
for pos, sid in zip(va_pos, val_o):
    part = orig[orig["id"] == sid].copy()
    part["id"] = int(pos)
    parts.append(part)
train = pd.concat(parts, ignore_index=True).sort_values(["id", "t"]).reset_index(drop=True)
import os

if os.environ.get("DRY"):
    print(n_total, len(tr_pos), len(va_pos), train["id"].nunique(), need, sorted(val_o)[:5])
    sys.exit()
cap = {}
orig_cal = E.calibrate_spread


def cal(model, batches, **kw):
    cap["n"] = sum(b.times.shape[0] for b in batches)
    cap["obs"] = sum(float(b.mask.sum()) for b in batches)
    return orig_cal(model, batches, **kw)


E.calibrate_spread = cal
t0 = time.time()
est = cb._estimator(ns).fit(train)
exp_obs = float(orig[orig["id"].isin(val_o)][cols].notna().sum().sum())
print(
    f"fit {time.time() - t0:.0f}s; validation {cap['n']} series, obs {cap['obs']} (expected {exp_obs})",
    flush=True,
)
lo, hi = case.time_range
cut = lo + case.cutoff * (hi - lo)
extra = cb.extra_test_series(case, seed, 200, first_id=int(df["id"].max()) + 1)
full = pd.concat([test, extra], ignore_index=True)
q = sorted({x for lv in cb.LEVELS for x in cb.central_interval(lv)})
out = cb.precise_coverage(est, full, cols, cut, 0.3, seed, 10, q, 100)
scale = dict(zip(cols, est.scaler_.scale_.tolist()))
cond, hidden = hide_values(test, 0.3, columns=cols, random_state=seed + 2)
pred = est.predict(cond, quantiles=q, n_samples=100)
early, fut = cb._forecast_rows(test, cols, cut)
fc = est.extrapolate(test[early], times=test[fut][["id", "t"]], quantiles=q, n_samples=100)
fm = test[fut][cols].notna().to_numpy()
import os
import pickle

from latentode.evaluation import channel_mean, linear_interpolation, locf

cache = f"{tempfile.gettempdir()}/cover_fit_{a.name}_{seed}.pkl"
if os.path.exists(cache):
    scale = dict(zip(cols, pickle.load(open(cache, "rb"))[0].scaler_.scale_.tolist()))
base = {}
for bname, fn in (("linear", linear_interpolation), ("locf", locf), ("mean", channel_mean)):
    bi = fn(cond, columns=cols)
    bf = fn(test[early], test[fut][["id", "t"]], columns=cols)
    base[bname] = (
        mse(test, bi, hidden, columns=cols, scale=scale),
        mse(test[fut], bf, fm, columns=cols, scale=scale),
    )
cache = f"{tempfile.gettempdir()}/cover_fit_{a.name}_{seed}.pkl"
if os.path.exists(cache):
    d = pickle.load(open(cache, "rb"))[0]
    dp = d.predict(cond, quantiles=q, n_samples=100)
    dfc = d.extrapolate(test[early], times=test[fut][["id", "t"]], quantiles=q, n_samples=100)
    ds = scale
    print(
        f"suite fit MSE interp {mse(test, dp, hidden, columns=cols, scale=ds):.3f} extrap {mse(test[fut], dfc, fm, columns=cols, scale=ds):.3f}; baselines (interp, extrap, suite fit's scale) "
        + "; ".join(f"{k} {v[0]:.3f} / {v[1]:.3f}" for k, v in base.items()),
        flush=True,
    )
print(
    f"{a.name} s{seed} leakfree interp {out['interp 50 mean']:.1f}+-{out['interp 50 se']:.1f} / "
    f"{out['interp 90 mean']:.1f}+-{out['interp 90 se']:.1f}, extrap {out['extrap 50 mean']:.1f}+-"
    f"{out['extrap 50 se']:.1f} / {out['extrap 90 mean']:.1f}+-{out['extrap 90 se']:.1f} met {out['met mean']:.0f}; "
    f"MSE interp {mse(test, pred, hidden, columns=cols, scale=scale):.3f} extrap {mse(test[fut], fc, fm, columns=cols, scale=scale):.3f}; "
    f"epochs {est.history_.n_epochs}; scale {[round(x, 2) for x in est.model_.spread_scale.tolist()]} "
    f"tails {est.model_.gap_spread.tail_df.flatten().tolist()}",
    flush=True,
)
