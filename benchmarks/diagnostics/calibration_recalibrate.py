# ruff: noqa: E402, E501, B023, E731
# A diagnosis script of #15 (docs/results/calibration.md, "The remaining misses"), kept for reproduction; run from the repository
# root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1.
"""Diagnosis of #15: one suite fit, re-calibrated on several sets of series; precise coverage."""

import argparse
import copy
import pickle
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
from latentode.training import calibration as C

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("seed", type=int)
p.add_argument("--variants", default="default,oracle,train,trainval,rounds24")
p.add_argument("--draws", type=int, default=10)
p.add_argument("--extra", type=int, default=200)
a = p.parse_args()
torch.set_num_threads(1)
# the suite's settings (its command line's defaults), 60 epochs
ns = cb.build_parser().parse_args(["--epochs", "60", "--seed", str(a.seed)])
case = cb.SUITE[a.name]
cache = Path(f"{tempfile.gettempdir()}/cover_fit_{a.name}_{a.seed}.pkl")
df = cb.make_case(case, a.seed)
cols = [c for c in df.columns if c not in ("id", "t")]
is_test = cb._test_split(df, 0.25, a.seed)
train, test = df[~is_test], df[is_test]
train = cb._with_prefixes(train, 1, case.time_range, a.seed + 3)
t0 = time.time()
if cache.exists():
    est, val_b, train_b = pickle.load(open(cache, "rb"))
else:
    cap = {}
    orig_cal, orig_fit = E.calibrate_spread, E._fit_model

    def cal(model, batches, **kw):
        cap["val"] = batches
        return orig_cal(model, batches, **kw)

    def fit(model, train_loader, val_loader, **kw):
        cap["train"] = train_loader
        return orig_fit(model, train_loader, val_loader, **kw)

    E.calibrate_spread, E._fit_model = cal, fit
    est = cb._estimator(ns).fit(train)
    E.calibrate_spread, E._fit_model = orig_cal, orig_fit
    val_b, train_b = cap["val"], list(cap["train"]())
    pickle.dump((est, val_b, train_b), open(cache, "wb"))
print(
    f"fit/load {time.time() - t0:.0f}s; val series {sum(b.times.shape[0] for b in val_b)}, "
    f"train {sum(b.times.shape[0] for b in train_b)}",
    flush=True,
)
lo, hi = case.time_range
cut = lo + case.cutoff * (hi - lo)
extra = cb.extra_test_series(case, a.seed, a.extra, first_id=int(df["id"].max()) + 1)
full_test = pd.concat([test, extra], ignore_index=True)
quantiles = sorted({q for level in cb.LEVELS for q in cb.central_interval(level)})


def batches_of(frame):
    vf, padded = est._prepare(frame)
    return list(
        E._data.iterate_batches(
            padded, 32, device=est.device_, dtype=next(est.model_.parameters()).dtype
        )
    )


def fresh(n, copies):
    f = cb.make_case(case, a.seed + 5000, n_series=n) if case.make != "physionet" else None
    if copies:
        f = cb._with_prefixes(f, 1, case.time_range, a.seed + 5003)
    return batches_of(f)


def recal(batches, **kw):
    e = copy.deepcopy(est)
    g = torch.Generator().manual_seed(12345)
    C.calibrate_spread(e.model_, batches, generator=g, **kw)
    return e


from latentode.utils import draw_seed

vf_ids = np.sort(train["id"].unique())
sd = np.random.SeedSequence(draw_seed(a.seed)).generate_state(3)
_, val_idx = E._data.split_series(len(vf_ids), 0.1, np.random.default_rng(sd[0]))
val_ids = vf_ids[val_idx]
first_copy = int(df[~is_test]["id"].max()) + 1  # _with_prefixes: copy id = id + this
n_val_obs = sum(float(b.mask.sum()) for b in val_b)
chk = sum(float(b.mask.sum()) for b in batches_of(train[train["id"].isin(val_ids)]))
print(
    "val obs",
    n_val_obs,
    "reconstructed",
    chk,
    "originals",
    int((val_ids < first_copy).sum()),
    flush=True,
)


def val_sub(orig):
    keep = val_ids[(val_ids < first_copy) == orig]
    return batches_of(train[train["id"].isin(keep)])


variants = {}
for v in a.variants.split(","):
    if v == "default":
        variants[v] = lambda: est
    elif v == "refit":
        variants[v] = lambda: recal(val_b)
    elif v == "oracle":
        variants[v] = lambda: recal(fresh(300, False))
    elif v == "oracle150c":
        variants[v] = lambda: recal(fresh(150, True))
    elif v == "train":
        variants[v] = lambda: recal(train_b)
    elif v == "trainval":
        variants[v] = lambda: recal(train_b + val_b)
    elif v == "rounds24":
        variants[v] = lambda: recal(val_b, rounds=24)
    elif v == "valorig":
        variants[v] = lambda: recal(val_sub(True))
    elif v == "valcopy":
        variants[v] = lambda: recal(val_sub(False))
    elif v == "onefactor":
        variants[v] = lambda: recal(val_b, by_gap=False)
for v, make in variants.items():
    t0 = time.time()
    e = make()
    out = cb.precise_coverage(e, full_test, cols, cut, 0.3, a.seed, a.draws, quantiles, 100)
    s = e.model_.spread_scale.tolist()
    gs = e.model_.gap_spread
    print(
        f"{a.name} s{a.seed} {v:10s} interp {out['interp 50 mean']:.1f}+-{out['interp 50 se']:.1f} / "
        f"{out['interp 90 mean']:.1f}+-{out['interp 90 se']:.1f}, extrap {out['extrap 50 mean']:.1f}+-"
        f"{out['extrap 50 se']:.1f} / {out['extrap 90 mean']:.1f}+-{out['extrap 90 se']:.1f} met {out['met mean']:.0f}"
        f" | scale {', '.join(f'{x:.2f}' for x in s)} tails {gs.tail_df.flatten().tolist()} "
        f"factors {[round(x, 2) for x in gs.factors.flatten().tolist()]} ({time.time() - t0:.0f}s)",
        flush=True,
    )
