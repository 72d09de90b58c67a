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
# # 04 - Irregular sampling and uncertainty
#
# * Every series has its own observation times, and channels may be missing independently: no
#   resampling to a grid is needed.
# * The Latent ODE is a generative model: sampling the posterior of the initial latent state
#   gives a distribution of trajectories, from which we draw predictive bands.
# * `poisson_process=True` also models *when* values are observed (the observation times as a
#   Poisson process), as in section 3.4 of the paper.

# %%
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from latentode import LatentODERegressor  # noqa: E402
from latentode.datasets import make_damped_oscillators, make_periodic  # noqa: E402

FAST = os.environ.get("LATENTODE_TUTORIAL_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("LATENTODE_TUTORIAL_OUT", "out/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
EPOCHS = 2 if FAST else 40
small = dict(rec_dim=16, units=32, n_layers=1, gru_units=32, encoder="gru", solver="rk4",
             gradient="backprop", max_epochs=EPOCHS, batch_size=32, kl_warmup=5,
             random_state=0, verbose=0)

# %% [markdown]
# ## Irregularly sampled sinusoids
#
# 50 random times per series on (0, 5); 60 % of the values observed. We fit on the first
# half of the time range of every series (t < 2.5) and forecast the second half.

# %%
df, truth = make_periodic(n_series=40 if FAST else 400, n_points=20 if FAST else 50,
                          obs_fraction=0.6, noise_std=0.05, random_state=1, return_truth=True)
print(df.groupby("id")["t"].agg(["size", "min", "max"]).head())
est = LatentODERegressor(latent_dim=6, **small).fit(df[df["t"] < 2.5])

# %% [markdown]
# ## Predictive bands
#
# `predict` and `extrapolate` take `quantiles=`: the predictive distribution of a value is the
# mixture, over posterior samples of `z_t0` pushed through the ODE, of Gaussians with the
# learned per-channel observation noise. After training, the estimator rescales its spread per
# channel on the validation series (`calibrate=True`, the default) so that central intervals
# reach their nominal coverage; the factors are in `est.model_.spread_scale`. `sample` draws
# whole predictive trajectories instead.


# %%
def predictive_band(model: LatentODERegressor, cond: pd.DataFrame, query: pd.DataFrame,
                    n_samples: int = 50, level: float = 0.9) -> pd.DataFrame:
    """Mean and central ``level`` band of the predictive distribution at the query rows."""
    lo, hi = (1 - level) / 2, (1 + level) / 2
    out = model.extrapolate(cond, times=query, quantiles=(lo, hi), n_samples=n_samples)
    for col in model.target_cols_:
        out = out.rename(columns={f"{col}_q{lo:g}": f"{col}_lo", f"{col}_q{hi:g}": f"{col}_hi"})
    return out


print("spread factors from the validation series:", est.model_.spread_scale.tolist())
sid = 0
cond = df[(df["id"] == sid) & (df["t"] < 2.5)]
grid = pd.DataFrame({"id": sid, "t": np.linspace(0, 5, 101)})
band = predictive_band(est, cond, grid, n_samples=10 if FAST else 100)
future = truth[(truth["id"] == sid)]
inside = np.interp(future["t"], band["t"], band["x0_lo"]) <= future["x0"]
inside &= future["x0"] <= np.interp(future["t"], band["t"], band["x0_hi"])
print(f"series {sid}: {inside.mean():.0%} of the true values inside the 90 % band")

fig, ax = plt.subplots(figsize=(8, 3))
ax.fill_between(band["t"], band["x0_lo"], band["x0_hi"], alpha=0.25, label="90 % band")
ax.plot(band["t"], band["x0"], label="posterior mean")
ax.plot(future["t"], future["x0"], "x", color="C3", ms=4, label="truth")
ax.plot(cond["t"], cond["x0"], "k.", label="conditioned on")
ax.axvline(2.5, color="grey", ls="--", lw=0.8)
ax.legend(fontsize=7, ncol=4)
ax.set_xlabel("t")
fig.tight_layout()
fig.savefig(OUT / "04_periodic_uncertainty.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## Damped oscillator, with and without the Poisson process
#
# Two channels (position, velocity), 30 % of the entries missing at random. The Poisson
# variant adds a per-channel intensity `lambda(z(t))`; its `score` includes the likelihood of
# the observation times, so only compare reconstruction errors between the two.

# %%
osc, osc_truth = make_damped_oscillators(n_series=40 if FAST else 300, n_points=20 if FAST else 40,
                                         missing_fraction=0.3, noise_std=0.02, random_state=2,
                                         return_truth=True)
test_ids = np.arange(0, osc["id"].max() + 1, 5)
train, test = osc[~osc["id"].isin(test_ids)], osc[osc["id"].isin(test_ids)]
errors = {}
models = {}
for poisson in (False, True):
    model = LatentODERegressor(latent_dim=4, poisson_process=poisson, **small).fit(train)
    pred = model.predict(test)
    clean = osc_truth.loc[test.index]
    errors["Poisson" if poisson else "Gaussian only"] = {
        c: float(((pred[c] - clean[c]) ** 2).mean()) for c in ("x0", "x1")}
    models[poisson] = model
print(pd.DataFrame(errors).T.round(4))

# %% [markdown]
# The Poisson model's `predict_intensity` gives the expected number of observations per time
# unit of each channel along each series' posterior trajectory; compare its average with the
# empirical rate (observed values per unit of time).

# %%
rate = models[True].predict_intensity(test)
span = test.groupby("id")["t"].agg(lambda t: t.max() - t.min())
empirical = test.groupby("id")[["x0", "x1"]].count().div(span, axis=0)
print(pd.DataFrame({"fitted": rate[["x0", "x1"]].mean(), "empirical": empirical.mean()}).round(2))

sid = int(test_ids[0])
rows = test[test["id"] == sid]
grid = pd.DataFrame({"id": sid, "t": np.linspace(0, 10, 201)})
fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
for poisson, color in ((False, "C0"), (True, "C2")):
    b = predictive_band(models[poisson], rows, grid, n_samples=10 if FAST else 50)
    for ax, c in zip(axes, ("x0", "x1")):
        ax.fill_between(b["t"], b[f"{c}_lo"], b[f"{c}_hi"], color=color, alpha=0.2)
        ax.plot(b["t"], b[c], color=color, label="Poisson" if poisson else "Gaussian only")
for ax, c in zip(axes, ("x0", "x1")):
    ax.plot(rows["t"], rows[c], "k.", label="observed")
    ax.set_ylabel("position" if c == "x0" else "velocity")
axes[0].legend(fontsize=7, ncol=3)
axes[-1].set_xlabel("t")
fig.tight_layout()
fig.savefig(OUT / "04_oscillator_poisson.png", dpi=100)
plt.close(fig)
print(f"wrote {OUT / '04_periodic_uncertainty.png'} and {OUT / '04_oscillator_poisson.png'}")
