# ruff: noqa: E402
# A diagnosis script of #15 (the trend's flattened forecasts; docs/results/across-datasets.md,
# "Why the defaults' forecasts flatten on trending data"), kept for reproduction; run from the
# repository root with the library importable (PYTHONPATH=.).
"""Where the defaults' forecasts of ``trend`` (the unseen family) lose the slope.

Fits :class:`~latentode.LatentODERegressor` as ``benchmarks/quality.py --family unseen
--datasets trend`` does (same data, split, seed; ``--param`` overrides), then scores on the same
fit, beside the baselines and the per-series straight line fitted to the past:

* the forecasts (conditioned on the values before the cutoff) under both point rules, with the
  readout as trained and with the latent path alone (``model_.readout`` set to None: the
  decoder of the latent state, no neighbour correction);
* the same future values reconstructed from the *whole* series (conditioned on every value,
  readout and latent path alone): in-window, does the model carry the slope there?
* the past itself reconstructed from the past (the conditioning values, in-window): does the
  path that the forecast continues fit the slope where it was conditioned? (and the same past
  values reconstructed from the whole series, for comparison)
* the readout's weight on the last value in the forecasts, ``(readout - latent) / (last value
  - latent)`` by least squares, overall and per horizon quartile;
* per row, the *slope gain*: the least-squares slope of the prediction on the future points
  (the known form: level, slope, the season's sine and cosine), regressed on the series' true
  slope (the same form fitted to the whole noisy series); 1: the slope is carried, 0: flat.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import quality as q
from _unseen import past_line, trend_form
from calibration import _forecast_rows, _test_split, make_case

from latentode import LatentODERegressor
from latentode.evaluation import mse

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=100)
p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
p.add_argument("--out", default=None)
a = p.parse_args()

import torch

torch.set_num_threads(1)
case = q.CASES["trend"]
df = make_case(case, a.seed)
cols = ["x0"]
is_test = _test_split(df, 0.25, a.seed)
train, test = df[~is_test], df[is_test].reset_index(drop=True)
loc, scale = train[cols].mean(), train[cols].std(ddof=0)
lo, hi = case.time_range
cut = lo + case.cutoff * (hi - lo)
early, fut = _forecast_rows(test, cols, cut)
past, future = test[early], test[fut]
query = future[["id", "t"]]
mask = future[cols].notna().to_numpy()
period = case.options["period"]


def slopes(frame) -> dict:
    out = {}
    for sid, f in frame.groupby("id"):
        f = f.dropna(subset=cols)
        if len(f) >= 5:
            coef, *_ = np.linalg.lstsq(trend_form(f["t"].to_numpy(), period),
                                       f["x0"].to_numpy(), rcond=None)
            out[sid] = coef[1]
    return out


true_b = slopes(test)  # the form fitted to the whole noisy series
# baselines (on the forecast points: LOCF is also the last value each forecast starts from)
base = q._baselines(past, query, cols, loc, "forecast")
last = base["LOCF"][cols].to_numpy(np.float64)


def gain(pred) -> float:
    pb = slopes(pred)
    ids = [i for i in pb if i in true_b]
    x = np.array([true_b[i] for i in ids])
    y = np.array([pb[i] for i in ids])
    return float((x * y).sum() / (x * x).sum())


def score(pred) -> dict:
    return {"mse": mse(future, pred, mask, columns=cols, loc=loc, scale=scale),
            "reversion": q.reversion(pred[cols].to_numpy(np.float64), last,
                                     loc[cols].to_numpy(np.float64), mask),
            "slope_gain": gain(pred)}


# the straight line on the past
line = query.assign(x0=np.nan)
for sid, f in future.groupby("id"):
    pc = past[past["id"] == sid][["t", "x0"]].dropna()
    line.loc[f.index, "x0"] = past_line(pc["t"].to_numpy(), pc["x0"].to_numpy(),
                                        f["t"].to_numpy(), loc["x0"])
res = {"truth": score(future[["id", "t", "x0"]].reset_index(drop=True)),
       "LOCF": score(base["LOCF"]), "mean": score(base["mean"]), "line": score(line)}

params = {"max_epochs": a.epochs, "random_state": a.seed, "verbose": 0}
est = LatentODERegressor(**params).set_params(**q.parse_params(a.param))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    est.fit(train, time_col="t", id_col="id")
    h = est.history_
    res["fit"] = {"epochs": h.n_epochs, "best": h.best_epoch + 1, "stopped": h.stopped_reason}
    sc = q.score_tasks(est, test, case, cols, loc, scale, hide=0.3, seed=a.seed)
    res["held-out"] = sc["held-out"]["mse"]
    readout = est.model_.readout
    kept: dict = {}
    for rule in ("predictive_mean", "posterior_mean"):
        est.set_params(point_prediction=rule)
        for part in ("readout", "latent only"):
            est.model_.readout = readout if part == "readout" else None
            if part == "latent only" and readout is None:
                continue
            rec = est.predict(past).set_index(past.index)
            pmask = past[cols].notna().to_numpy()
            res[f"past {rule} {part}"] = {
                "mse": mse(past, rec, pmask, columns=cols, loc=loc, scale=scale),
                "reversion": float("nan"), "slope_gain": gain(rec)}
            fc = est.extrapolate(past, times=query)
            res[f"forecast {rule} {part}"] = score(fc.set_index(future.index))
            kept[part] = fc["x0"].to_numpy(np.float64)
            whole_all = est.predict(test)
            whole = whole_all.loc[fut].reset_index(drop=True)
            res[f"whole {rule} {part}"] = score(whole.set_index(future.index))
            wpast = whole_all.loc[early].set_index(past.index)
            res[f"past from the whole {rule} {part}"] = {
                "mse": mse(past, wpast, pmask, columns=cols, loc=loc, scale=scale),
                "reversion": float("nan"), "slope_gain": gain(wpast)}
            if part == "latent only" and rule == "predictive_mean":
                res["held-out latent only"] = mse(
                    test, est.predict(sc["held-out"]["_cond"]), sc["held-out"]["_mask"],
                    columns=cols, loc=loc, scale=scale)
        est.model_.readout = readout
        if readout is not None:
            # the readout's weight on the last value: (readout - latent) / (last - latent),
            # least squares over the forecast entries, overall and per horizon quartile
            d, r = last[:, 0] - kept["latent only"], kept["readout"] - kept["latent only"]
            hz = future["t"].to_numpy() - past.groupby("id")["t"].max().reindex(
                future["id"]).to_numpy()
            edges = np.quantile(hz, [0, 0.25, 0.5, 0.75, 1])
            res[f"weight on the last value, {rule}"] = [float((r * d).sum() / (d * d).sum())] + [
                float((r[m] * d[m]).sum() / (d[m] ** 2).sum()) for m in
                [(hz >= lo_) & (hz <= hi_) for lo_, hi_ in zip(edges[:-1], edges[1:])]]
            res["horizon quartile edges (data time)"] = edges.tolist()
    if readout is not None:
        res["readout reach (model time)"] = readout.log_reach.exp().tolist()
        res["time scale"] = float(est.time_encoder_.scale_)

print(f"trend seed {a.seed} params {a.param}: fit {res['fit']}, held-out {res['held-out']}")
for k, v in res.items():
    if isinstance(v, dict) and "mse" in v:
        print(f"  {k:38s} mse {v['mse']:.4f}  reversion {v['reversion']:+.2f}  "
              f"slope gain {v['slope_gain']:+.2f}")
    elif k not in ("fit", "held-out"):
        print(f"  {k}: {v}")
if a.out:
    Path(a.out).write_text(json.dumps(res, indent=1, default=float))
