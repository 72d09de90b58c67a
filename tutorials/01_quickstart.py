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
# # 01 - Quickstart: fit, predict, extrapolate, plot
#
# `LatentODERegressor` fits a Latent ODE (Rubanova et al., 2019) to a **long** DataFrame:
# one row per (series, time), one column per channel, `NaN` where a channel was not measured.
# This tutorial uses the 300 PhysioNet 2012 ICU stays bundled with latentode (no download).
#
# Environment variables (used by the test suite):
#
# * `LATENTODE_TUTORIAL_FAST=1` shrinks the data and the training to a few seconds;
# * `LATENTODE_TUTORIAL_OUT` is the folder the figures go to (default `out/tutorials`).

# %%
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; figures are written to files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from latentode import LatentODERegressor  # noqa: E402
from latentode.datasets import load_physionet_sample  # noqa: E402

FAST = os.environ.get("LATENTODE_TUTORIAL_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("LATENTODE_TUTORIAL_OUT", "out/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Data
#
# `load_physionet_sample()` returns columns `id` (stay), `t` (hours since ICU admission) and the
# 41 parameters of the challenge. We keep three well-observed vital signs and drop rows where
# none of them was measured.

# %%
CHANNELS = ["HR", "MAP", "Temp"]
df = load_physionet_sample(n_stays=40 if FAST else None)[["id", "t", *CHANNELS]]
df = df[df[CHANNELS].notna().any(axis=1)].reset_index(drop=True)
df = df[df.groupby("id")["t"].transform("size") >= 2]  # fit needs 2 time points per stay
print(df.head())
print(f"{df['id'].nunique()} stays, {len(df)} rows, "
      f"{int(df[CHANNELS].notna().sum().sum())} observed values")

# %% [markdown]
# Split by **stay** (never by row): the model conditions on a stay's own observations at
# prediction time, so test stays are simply unseen ids.

# %%
rng = np.random.default_rng(0)
ids = df["id"].unique()
test_ids = rng.choice(ids, size=max(2, len(ids) // 5), replace=False)
train, test = df[~df["id"].isin(test_ids)], df[df["id"].isin(test_ids)]

# %% [markdown]
# ## Fit
#
# A small model: GRU encoder and a fixed-step RK4 solver train fastest on a CPU. Defaults
# (ODE-RNN encoder, adaptive dopri5, adjoint gradients) follow the paper.

# %%
est = LatentODERegressor(
    latent_dim=8, rec_dim=16, units=32, n_layers=1, gru_units=32, encoder="gru",
    solver="rk4", gradient="backprop", max_epochs=2 if FAST else 40, batch_size=32,
    lr=1e-2, kl_warmup=5, patience=8, random_state=0, verbose=0,
)
est.fit(train, time_col="t", id_col="id")
print(f"{est.history_.n_epochs} epochs, best epoch {est.history_.best_epoch}, "
      f"stopped: {est.history_.stopped_reason}")

# %% [markdown]
# ## Predict (reconstruct / impute) and score
#
# `predict(df)` returns one row per input row, with every channel filled in (also where it was
# `NaN`): the posterior-mean trajectory in the original units. `score` is the mean IWAE
# log-likelihood per observed value (higher is better).

# %%
recon = est.predict(test)
print(recon.head())
print(f"test score: {est.score(test):.3f}")

# %% [markdown]
# ## Extrapolate
#
# `extrapolate(df, horizon, n_points)` forecasts each stay after its last observation. Here we
# condition on the first 24 h and forecast 24 h ahead.

# %%
past = test[test["t"] < 24]
forecast = est.extrapolate(past, horizon=24.0, n_points=48)
print(forecast.head())

# %% [markdown]
# ## Plot one stay

# %%
stay = past.groupby("id").size().idxmax()
fig, axes = plt.subplots(len(CHANNELS), 1, figsize=(8, 6), sharex=True)
rows, fc = test[test["id"] == stay], forecast[forecast["id"] == stay]
for ax, ch in zip(axes, CHANNELS):
    ax.plot(rows["t"], rows[ch], "k.", label="observed")
    ax.plot(rows["t"], recon.loc[rows.index, ch], color="C0", label="reconstruction")
    ax.plot(fc["t"], fc[ch], color="C3", label="forecast from 24 h")
    ax.axvline(24, color="grey", ls="--", lw=0.8)
    ax.set_ylabel(ch)
axes[0].legend(fontsize=7, loc="upper left")
axes[-1].set_xlabel("hours since ICU admission")
fig.tight_layout()
fig.savefig(OUT / "01_quickstart.png", dpi=100)
plt.close(fig)
print(f"wrote {OUT / '01_quickstart.png'}")
