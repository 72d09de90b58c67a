"""Long series: the solver's step budget grows with the series; failures name ``max_steps``.

The adjoint's backward solve stops at every observation time, so a series of ``n`` points needs
at least ``n`` steps. Before the budget grew with the series, one series of 50,000 points could
not be fitted with the default ``max_steps=10_000``; here the same situation is scaled down (a
few thousand points against ``max_steps=50``) to stay fast.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from latentode import LatentODERegressor
from latentode.ode import ODESolveError, odeint
from latentode.utils import torch_threads

N_POINTS = 3000
SMALL = dict(latent_dim=3, rec_dim=6, units=12, n_layers=1, gru_units=12, encoder="gru",
             batch_size=8, validation_fraction=0.0, verbose=0, random_state=0, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def long_series() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0.0, 300.0, N_POINTS))
    x = np.sin(t / 7.0) + 0.1 * rng.normal(size=N_POINTS)
    x[rng.random(N_POINTS) < 0.2] = np.nan  # and some values missing
    return pd.DataFrame({"id": "long", "t": t, "x": x})


def test_one_long_series_fits_and_predicts_with_a_small_step_budget(
    long_series: pd.DataFrame,
) -> None:
    max_steps = 50
    est = LatentODERegressor(**SMALL, gradient="adjoint", max_epochs=1, max_steps=max_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no batch may be skipped
        est.fit(long_series)
    (record,) = est.history_.records
    assert record["n_skipped"] == 0 and np.isfinite(record["train_loss"])
    n_obs = int(long_series["x"].notna().sum())
    assert est.model_.step_budget(n_obs) == max_steps + 2 * (n_obs + 1)

    pred = est.predict(long_series)
    assert pred.shape == (N_POINTS, 3) and np.isfinite(pred["x"]).all()
    fc = est.extrapolate(long_series, horizon=10.0, n_points=5)
    assert len(fc) == 5 and np.isfinite(fc["x"]).all()
    assert est.model_.max_steps == max_steps  # the per-call budget is not left behind

    # the fixed budget alone could not have done it: the backward solve needs a step per time
    model = est.model_
    times = torch.as_tensor(est.time_encoder_.transform(long_series["t"].to_numpy()),
                            dtype=torch.float32)
    z0 = torch.zeros(1, model.latent_dim, requires_grad=True)
    z = odeint(model.ode_func, z0, times, method=model.method, rtol=model.rtol,
               atol=model.atol, gradient="adjoint", max_steps=max_steps)
    with pytest.raises(ODESolveError, match="max_steps=50 "):
        z.sum().backward()


def _frame() -> pd.DataFrame:
    t = np.linspace(0.0, 4.0, 12)
    return pd.DataFrame({"id": np.repeat(["a", "b"], 12), "t": np.tile(t, 2),
                         "x": np.r_[np.sin(t), np.cos(t)]})


def test_prediction_error_names_the_series_and_max_steps() -> None:
    df = _frame()
    # rk4 with a tiny step needs ~1,000 steps per series: far above 5 + 2 per requested time
    est = LatentODERegressor(**SMALL, solver="rk4", step_size=1e-3, max_epochs=0,
                             max_steps=5).fit(df)
    with pytest.raises(ODESolveError) as info:
        est.predict(df)
    msg = str(info.value)
    assert "series 'a' (column 'id')" in msg and "max_steps=5 " in msg
    assert "est.set_params(max_steps=50)" in msg
    assert info.value.reason == "max_steps" and info.value.series == 0
    assert est.model_.max_steps == 5
    # the parameter is read at every call: raising it fixes the fitted estimator
    pred = est.set_params(max_steps=5000).predict(df)
    assert np.isfinite(pred["x"]).all()
    with pytest.raises(ODESolveError, match="series 'b'"):
        est.set_params(max_steps=5).extrapolate(df[df["id"] == "b"], horizon=1.0)
    with pytest.raises(ODESolveError, match="max_steps=5 "):
        est.score(df)


def test_failed_fit_names_estimator_parameters_and_keeps_the_estimator() -> None:
    df = _frame()
    est = LatentODERegressor(**SMALL, solver="rk4", step_size=1e-3, gradient="backprop",
                             max_epochs=2, max_steps=5)
    with pytest.warns(RuntimeWarning, match="ODE solve failed"), \
            pytest.raises(RuntimeError, match="Training failed in epoch 1") as info:
        est.fit(df)
    msg = str(info.value)
    assert "max_steps" in msg and "left as it was" in msg
    assert "grad_clip" not in msg and "restored" not in msg
    assert not hasattr(est, "model_")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_max_steps_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        LatentODERegressor(**SMALL, max_steps=bad).fit(_frame())
