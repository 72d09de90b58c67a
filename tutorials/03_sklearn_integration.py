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
# # 03 - scikit-learn integration: Pipeline, GridSearchCV with GroupKFold, save / load
#
# `LatentODERegressor` follows the scikit-learn estimator conventions (`get_params`,
# `set_params`, `clone`, `score`), so it composes with `Pipeline` and model selection. The
# input is a long DataFrame, and cross-validation must split by **series**: use `GroupKFold`
# with `groups=df["id"]`, otherwise rows of one series end up in both folds.

# %%
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import GridSearchCV, GroupKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from latentode import LatentODERegressor  # noqa: E402
from latentode.datasets import make_periodic  # noqa: E402

FAST = os.environ.get("LATENTODE_TUTORIAL_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("LATENTODE_TUTORIAL_OUT", "out/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Data: irregularly sampled sinusoids, with a few outliers

# %%
df = make_periodic(n_series=40 if FAST else 300, n_points=20 if FAST else 50,
                   obs_fraction=0.7, noise_std=0.05, random_state=0)
df.loc[df.sample(frac=0.01, random_state=0).index, "x0"] = 25.0  # sensor glitches
print(df.head())

# %% [markdown]
# ## A Pipeline
#
# Any DataFrame-to-DataFrame step can precede the estimator. Here a `FunctionTransformer`
# marks implausible values as missing (`NaN` = not observed, which the Latent ODE handles).
# Fit parameters of the estimator are routed with the step name: `est__time_col=...`.


# %%
def drop_outliers(frame: pd.DataFrame, limit: float = 5.0) -> pd.DataFrame:
    """Replace channel values beyond +-limit by NaN (treated as not observed)."""
    out = frame.copy()
    out["x0"] = out["x0"].where(out["x0"].abs() <= limit)
    return out


small = dict(rec_dim=16, units=32, n_layers=1, gru_units=32, encoder="gru", solver="rk4",
             gradient="backprop", max_epochs=2 if FAST else 30, batch_size=32,
             validation_fraction=0.0, kl_warmup=3, random_state=0, verbose=0)
pipe = Pipeline([
    ("clean", FunctionTransformer(drop_outliers)),
    ("est", LatentODERegressor(latent_dim=4, **small)),
])
pipe.fit(df, est__time_col="t", est__id_col="id")
print(f"pipeline score (mean log-likelihood per observed value): {pipe.score(df):.3f}")

# %% [markdown]
# ## Grid search, split by series
#
# `score` is comparable across folds (it is a log-density in the original units), so it is the
# default scoring of `GridSearchCV`.

# %%
search = GridSearchCV(
    pipe,
    {"est__latent_dim": [2, 4] if FAST else [2, 4, 8], "est__kl_warmup": [0, 3]},
    cv=GroupKFold(n_splits=2 if FAST else 3),
)
search.fit(df, groups=df["id"], est__time_col="t", est__id_col="id")
results = pd.DataFrame(search.cv_results_)[
    ["param_est__latent_dim", "param_est__kl_warmup", "mean_test_score", "std_test_score"]]
print(results)
print("best:", search.best_params_)

fig, ax = plt.subplots(figsize=(5, 3))
for kw, grp in results.groupby("param_est__kl_warmup"):
    ax.errorbar(grp["param_est__latent_dim"].astype(int), grp["mean_test_score"],
                yerr=grp["std_test_score"], marker="o", capsize=3, label=f"kl_warmup={kw}")
ax.set_xlabel("latent_dim")
ax.set_ylabel("CV score (log-lik. per value)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "03_grid_search.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## Save and load
#
# `save` writes one file (JSON configuration + weights, no pickle); `load` restores it,
# optionally on another device. The preprocessing step of the pipeline is plain code: keep it
# with your project (or pickle the whole pipeline with `joblib`, which also works).

# %%
best = search.best_estimator_.named_steps["est"]
path = OUT / "03_best_model.latentode"
best.save(path)
loaded = LatentODERegressor.load(path, device="cpu")
clean = drop_outliers(df)
a, b = best.predict(clean), loaded.predict(clean)
print(f"max |difference| after reload: {np.abs(a['x0'] - b['x0']).max():.2e}")
assert np.allclose(a["x0"], b["x0"], atol=1e-5)
print(f"wrote {OUT / '03_grid_search.png'} and {path}")
