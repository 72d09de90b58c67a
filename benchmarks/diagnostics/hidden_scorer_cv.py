# A figure of docs/results/messy-data.md (the hidden-value scorer), kept for reproduction; run from
# the repository root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1.
"""The README example's cross-validated scores beside the baselines on the same hidden points.

The first 60 stays of the bundled PhysioNet sample with an observed HR, MAP or Temp, GroupKFold(3);
per fold a LatentODERegressor(latent_dim=8) is scored by ``make_hidden_scorer(0.3)`` (hidden values)
and ``make_hidden_scorer(0.3, task="forecast")`` (each stay's last 30 %), and linear
interpolation, LOCF and the channel mean (fallback: the training fold's mean) are scored on the
same entries, z-scored by the fold's training scaler.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from latentode import LatentODERegressor
from latentode.datasets import load_physionet_sample
from latentode.evaluation import (
    channel_mean,
    hide_values,
    linear_interpolation,
    locf,
    make_hidden_scorer,
    mse,
)
from latentode.evaluation.scoring import _forecast_split

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--seed", type=int, default=0, help="the estimator's random_state")
args = parser.parse_args()
warnings.simplefilter("ignore")
cols = ["HR", "MAP", "Temp"]
df = load_physionet_sample()[["id", "t", *cols]]
observed = df.dropna(subset=cols, how="all")["id"].unique()
stays = df[df["id"].isin(observed[:60])]
rows = []
for k, (tr, te) in enumerate(GroupKFold(3).split(stays, groups=stays["id"])):
    train, test = stays.iloc[tr], stays.iloc[te]
    tic = time.time()
    est = LatentODERegressor(latent_dim=8, max_epochs=args.epochs, verbose=0,
                             random_state=args.seed).fit(train)
    loc = dict(zip(cols, est.scaler_.mean_))
    scale = dict(zip(cols, est.scaler_.scale_))
    ev = dict(columns=cols, fallback=train[cols].mean())

    def z(truth, pred, mask, loc=loc, scale=scale):
        return mse(truth, pred[cols], mask, columns=cols, loc=loc, scale=scale)

    cond, hidden = hide_values(test, 0.3, columns=cols, random_state=0)  # the scorer's entries
    rows.append({"fold": k, "task": "interpolation", "n": int(hidden.sum()),
                 "model": -make_hidden_scorer(0.3)(est, test),
                 "linear": z(test, linear_interpolation(cond, **ev), hidden),
                 "LOCF": z(test, locf(cond, **ev), hidden),
                 "mean": z(test, channel_mean(cond, **ev), hidden)})
    past, future = _forecast_split(test, cols, "id", "t", 0.3)
    truth = test[future]
    mask = truth[cols].notna().to_numpy()
    query = truth[["id", "t"]]
    rows.append({"fold": k, "task": "forecast", "n": int(mask.sum()),
                 "model": -make_hidden_scorer(0.3, task="forecast")(est, test),
                 "linear": np.nan,
                 "LOCF": z(truth, locf(test[past], query, **ev), mask),
                 "mean": z(truth, channel_mean(test[past], query, **ev), mask)})
    print(f"fold {k}: fit and scores {time.time() - tic:.0f} s", flush=True)
out = pd.DataFrame(rows)
print(out.to_string(float_format=lambda x: f"{x:.3f}"))
print(out.groupby("task")[["model", "linear", "LOCF", "mean"]].mean()
      .to_string(float_format=lambda x: f"{x:.3f}"))
