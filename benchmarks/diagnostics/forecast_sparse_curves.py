# ruff: noqa: E401, E402, E501, E702, E731, I001, B007
# A diagnosis script of #15 (docs/results/across-datasets.md, "(a) osc-sparse"), kept for reproduction; run from the
# repository root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1:
#     python benchmarks/diagnostics/forecast_sparse_curves.py SEED EPOCHS TAG [--param NAME=VALUE ...]
"""One fit of the calibration suite's osc-sparse (its own data, split, clean validation, estimator, hiding and
baselines), the weights snapshotted at every epoch and each snapshot scored on the suite's test points (held-out
and forecast MSE) and on the validation series' reconstruction alone; writes
$FSPARSE_OUT/res_<TAG>_s<SEED>_e<EPOCHS>.json (default /tmp/fsparse) and prints one line. Options not listed
here (--param NAME=VALUE, ...) go to benchmarks/calibration.py's parser."""
import argparse, json, os, sys, time
from pathlib import Path
parser = argparse.ArgumentParser(description=__doc__.replace("\n", " "), allow_abbrev=False)
parser.add_argument("seed", type=int, help="the suite's seed (data, split, estimator)")
parser.add_argument("epochs", type=int, help="max_epochs of the fit")
parser.add_argument("tag", help="names the JSON file and the printed line")
parser.add_argument("--dataset", default="osc-sparse", metavar="NAME",
                    help="a data set of the calibration suite (default osc-sparse)")
cli, rest = parser.parse_known_args()
seed, epochs, tag, name = cli.seed, cli.epochs, cli.tag, cli.dataset
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
OUT = os.environ.get("FSPARSE_OUT", "/tmp/fsparse")
os.makedirs(OUT, exist_ok=True)
import numpy as np, pandas as pd, torch
import calibration as cal
from latentode.evaluation import hide_values, mse

args = cal.build_parser().parse_args(["--suite", name, "--epochs", str(epochs), "--seed", str(seed),
                                      "--threads", "1", *rest])
torch.set_num_threads(1)
case = cal.SUITE[name]
df = cal.make_case(case, seed)
cols = [c for c in df.columns if c not in ("id", "t")]
is_test = cal._test_split(df, args.test_fraction, seed)
train, test = df[~is_test], df[is_test]
train, fit_kw = cal._fit_data(args, train, case.time_range)
snaps = []
def snap(epoch, record, model):
    snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
est = cal._estimator(args).set_params(callbacks=[snap])
t0 = time.perf_counter()
est.fit(train, **fit_kw)
fit_s = time.perf_counter() - t0
cond, hidden = hide_values(test, args.hide, columns=cols, random_state=seed + 2)
lo, hi = case.time_range
cutoff = lo + case.cutoff * (hi - lo)
early, fut = cal._forecast_rows(test, cols, cutoff)
past, future = test[early], test[fut]
fmask = future[cols].notna().to_numpy()
scale = dict(zip(cols, est.scaler_.scale_.tolist()))
def score(model):
    pred = model.predict(cond)
    fc = model.extrapolate(past, times=future[["id", "t"]])
    return (mse(test, pred, hidden, columns=cols, scale=scale),
            mse(future, fc, fmask, columns=cols, scale=scale))
final = score(est)
out = {"tag": tag, "seed": seed, "epochs": epochs, "params": rest, "fit_s": fit_s,
       "best": est.history_.best_epoch, "n_epochs": est.history_.n_epochs,
       "stopped": est.history_.stopped_reason, "held": final[0], "fc": final[1]}
fallback = pd.Series(est.scaler_.mean_, index=cols)
for task, seen, query, truth, mask in (("held", cond, None, test, hidden),
                                       ("fc", past, future[["id", "t"]], future, fmask)):
    for m, frame in cal.baselines(seen, query, cols, fallback,
                                  "held-out" if task == "held" else "forecast").items():
        out[f"{task} {m}"] = mse(truth, frame, mask, columns=cols, scale=scale)
# hidden values by kind: a visible value of the channel on both sides (two-sided) or one
vis = cond[cols].notna().to_numpy()
g = cond["id"].to_numpy()
before = np.zeros_like(vis, dtype=bool); after = np.zeros_like(vis, dtype=bool)
for j in range(len(cols)):
    sv = pd.Series(vis[:, j].astype(int))
    before[:, j] = (sv.groupby(g).cumsum() - sv).to_numpy() > 0
    after[:, j] = (sv[::-1].groupby(g[::-1]).cumsum() - sv[::-1])[::-1].to_numpy() > 0
two = hidden & before & after
one = hidden & ~(before & after)
pred_final = est.predict(cond)
lin = cal.baselines(cond, None, cols, fallback, "held-out")["linear"]
for kind, m in (("two", two), ("one", one)):
    out[f"held {kind} n"] = int(m.sum())
    out[f"held {kind}"] = mse(test, pred_final, m, columns=cols, scale=scale)
    out[f"held {kind} linear"] = mse(test, lin, m, columns=cols, scale=scale)
best_state = {k: v.clone() for k, v in est.model_.state_dict().items()}
per = []
from latentode.training import evaluate_loss
import latentode.data as D
_, vpad = est._prepare(fit_kw["validation_data"])
est.model_.eval()
def valrec():
    r = evaluate_loss(est.model_, D.iterate_batches(vpad, 32), 3,
                      generator=torch.Generator().manual_seed(123))
    return [r["loss"], r["mse"]]
for i, s in enumerate(snaps):
    est.model_.load_state_dict(s)
    per.append(score(est) + tuple(valrec()))
est.model_.load_state_dict(best_state)
out["per_epoch"] = per
out["records"] = [{k: r.get(k) for k in ("train_loss", "val_loss", "val_mse", "val_nll", "train_mse", "kl_weight")}
                  for r in est.history_.records]
out["obs_std"] = est.model_.obs_std.detach().cpu().tolist()
json.dump(out, open(f"{OUT}/res_{tag}_s{seed}_e{epochs}.json", "w"))
h = np.array(per)[:, :2]
print(f"{tag} s{seed} e{epochs}: held {final[0]:.4f} fc {final[1]:.4f} best {out['best']+1}/{out['n_epochs']} "
      f"({out['stopped']}); min held {h[:,0].min():.4f}@{h[:,0].argmin()+1} min fc {h[:,1].min():.4f}@{h[:,1].argmin()+1}; "
      f"lin {out['held linear']:.4f} locf {out['held LOCF']:.4f} mean {out['held mean']:.4f} | fc locf {out['fc LOCF']:.4f} "
      f"mean {out['fc mean']:.4f}; two-sided {out['held two']:.4f} (lin {out['held two linear']:.4f}, n {out['held two n']}) one-sided {out['held one']:.4f} (lin {out['held one linear']:.4f}, n {out['held one n']}); {fit_s:.0f}s", flush=True)
