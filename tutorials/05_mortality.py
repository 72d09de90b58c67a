# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 - In-hospital mortality: `LatentODEClassifier` with static covariates
#
# The Latent ODE paper's third PhysioNet task predicts whether an ICU stay ends in death from
# the first 48 hours of irregular measurements. `LatentODEClassifier` takes the same long
# DataFrame as the regressor and **one label per stay**. The descriptors recorded once per
# stay (age, sex, height, ICU type) are not time series: given as `static_cols`, they shape the
# posterior of the initial latent state and feed the classifier, and the likelihood does not
# have to reconstruct them. The classifier head reads the latent state beside per-channel
# summaries of each stay's observed values (last, mean, minimum, maximum, count, time since the
# last measurement, and whether the channel was measured at all) and the encoder's hidden
# states pooled over the stay's measurements (`head_inputs="latent+summary+pooled"`, the
# default; `"latent"` is the paper's head, which reads the latent state alone).
#
# This runs on the 300 stays bundled with the package (54 deaths), so its figures are noisy;
# `benchmarks/physionet.py --task classification` runs the paper's protocol on set-a.

# %%
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from latentode import LatentODEClassifier  # noqa: E402
from latentode.datasets import load_physionet_sample  # noqa: E402

FAST = os.environ.get("LATENTODE_TUTORIAL_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("LATENTODE_TUTORIAL_OUT", "out/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Data: stays, outcomes, descriptors
#
# `return_outcomes=True` adds the outcomes table (one row per stay, indexed by RecordID, the
# `id` of the frame). `In-hospital_death` is the label: a Series indexed by stay id is exactly
# the `y` the classifier takes. ICU type is a code (1 to 4), so it is made categorical
# (one-hot encoded); age and height are numbers (standardised); a stay without a height has
# a missing value, encoded as 0 plus an indicator.

# %%
df, outcomes = load_physionet_sample(return_outcomes=True)
y = outcomes["In-hospital_death"]
static = ["Age", "Gender", "Height", "ICUType"]
df["ICUType"] = df["ICUType"].astype("category")
df["Gender"] = df["Gender"].map({0.0: "female", 1.0: "male"})
channels = ["HR", "MAP", "Temp", "GCS", "BUN", "Creatinine", "Lactate", "Urine", "pH", "WBC"]
df = df[["id", "t", *channels, *static]]
print(f"{df['id'].nunique()} stays, {int(y.sum())} deaths; channels {channels}")
print(df.groupby("id")[static].first().head())

# %% [markdown]
# ## Train / test split by stay
#
# Stratified, so that both parts hold deaths. `class_weight="balanced"` weighs the deaths
# (18 % of stays) like the survivors in the cross-entropy. With 210 training stays a validation
# split would hold about 30 stays and 5 deaths, too few to choose an epoch by (early stopping on
# them stopped after 9 epochs at an AUC-ROC below 0.5 here), so the classifier trains on all of
# them for a fixed number of epochs (`validation_fraction=0`); on PhysioNet's 3,200 training
# stays the default early stopping on the validation log-loss pays (README). Either way the
# fitted weights are a moving average of the optimiser's over about the last two epochs
# (`weight_averaging=2`, the default), steadier than the last step's.

# %%
train_ids, test_ids = train_test_split(y.index.to_numpy(), test_size=0.3, random_state=0,
                                       stratify=y)
train, test = df[df["id"].isin(train_ids)], df[df["id"].isin(test_ids)]
clf = LatentODEClassifier(
    classifier="latent", class_weight="balanced",
    latent_dim=8, rec_dim=20, units=32, n_layers=1, gru_units=32, encoder="gru",
    gradient="backprop", solver="rk4", max_epochs=2 if FAST else 25, batch_size=30,
    validation_fraction=0.0, random_state=0, verbose=0,
)
clf.fit(train, y.loc[train_ids], target_cols=channels, static_cols=static)
print(f"trained {clf.history_.n_epochs} epochs; classes {clf.classes_.tolist()}; encoded static "
      f"features {clf.static_encoder_.feature_names}")

# %% [markdown]
# ## Scores
#
# `predict_proba` gives one row per stay (indexed by id) and one column per class. AUC-ROC and
# AUC-PR come from scikit-learn; `score` is the accuracy over stays. The baseline is a logistic
# regression on per-stay summaries (last, mean, min, max, count of each channel) and the
# descriptors.

# %%
proba = clf.predict_proba(test)[1]
truth = y.loc[proba.index]
ours = proba.fillna(float(y.loc[train_ids].mean()))  # a stay with no measured channel


def summaries(frame: pd.DataFrame) -> pd.DataFrame:
    g = frame.sort_values("t").groupby("id")[channels]
    feats = pd.concat({"last": g.last(), "mean": g.mean(), "min": g.min(), "max": g.max(),
                       "count": g.count()}, axis=1)
    desc = frame.groupby("id")[static].first()
    desc = pd.get_dummies(desc, columns=["Gender", "ICUType"], dtype=float)
    feats.columns = [f"{a}_{b}" for a, b in feats.columns]
    return feats.join(desc)


x_train, x_test = summaries(train), summaries(test).reindex(columns=summaries(train).columns)
mean, std = x_train.mean(), x_train.std().replace(0, 1)
logreg = LogisticRegression(max_iter=2000, class_weight="balanced")
logreg.fit(((x_train - mean) / std).fillna(0.0), y.loc[x_train.index])
base = pd.Series(logreg.predict_proba(((x_test - mean) / std).fillna(0.0))[:, 1],
                 index=x_test.index).loc[proba.index]
for name, p in [("LatentODEClassifier", ours), ("logistic regression", base)]:
    print(f"{name:22s} AUC-ROC {roc_auc_score(truth, p):.3f}  "
          f"AUC-PR {average_precision_score(truth, p):.3f}")
print(f"accuracy over test stays: {clf.score(test, y.loc[test_ids]):.3f}")

# %% [markdown]
# ## ROC curves

# %%
fig, ax = plt.subplots(figsize=(4.5, 4.5))
for name, p in [("Latent ODE", ours), ("logistic regression", base)]:
    fpr, tpr, _ = roc_curve(truth, p)
    ax.plot(fpr, tpr, label=f"{name} ({roc_auc_score(truth, p):.2f})")
ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
ax.set_xlabel("false positive rate")
ax.set_ylabel("true positive rate")
ax.set_title("In-hospital mortality, 90 test stays")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(OUT / "05_mortality_roc.png", dpi=120)
plt.close(fig)
print(np.round(proba.head(), 3))
