"""Post-hoc spread calibration: :func:`latentode.training.calibrate_spread` and its use."""

from __future__ import annotations

import _settings
import numpy as np
import pytest
import torch
from torch import nn

from latentode import LatentODERegressor
from latentode.data.batch import Batch
from latentode.nn import LatentODE, PredictOutput
from latentode.training import calibrate_spread


class _ConstantModel(nn.Module):
    """Predicts every value as N(0, 1) with no posterior spread (S identical samples)."""

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.register_buffer("spread_scale", torch.ones(n_channels))
        self.calls = []

    def predict(self, cond, times, lengths, n_samples=1, generator=None, use_mean=True,
                calibrated=True):
        self.calls.append(calibrated)
        b, n, c = cond.values.shape
        return PredictOutput(mean=torch.zeros(n_samples, b, n, c, dtype=cond.values.dtype),
                             obs_std=torch.ones(c, dtype=cond.values.dtype), intensity=None)


def _batches(stds, n_series=400, length=20, seed=123, sparse_channel=None):
    g = torch.Generator().manual_seed(seed)
    c = len(stds)
    values = torch.randn(n_series, length, c, generator=g, dtype=torch.float64)
    values = values * torch.tensor(stds, dtype=torch.float64)
    mask = torch.ones_like(values)
    if sparse_channel is not None:
        mask[:, :, sparse_channel] = 0.0
        mask[:3, 0, sparse_channel] = 1.0  # 3 observed values in all
    times = torch.linspace(0, 1, length, dtype=torch.float64).expand(n_series, length)
    lengths = torch.full((n_series,), length)
    return [Batch(times[i:i + 50], values[i:i + 50] * mask[i:i + 50], mask[i:i + 50],
                  lengths[i:i + 50]) for i in range(0, n_series, 50)]


@pytest.mark.parametrize("criterion", ["coverage", "likelihood"])
def test_scale_recovers_the_true_spread(criterion):
    """Values ~ N(0, s_c^2) predicted as N(0, 1): the factor is s_c (grid step 3.6 %)."""
    model = _ConstantModel(3)
    scale = calibrate_spread(model, _batches([2.0, 0.5, 1.0]), criterion=criterion,
                             generator=torch.Generator().manual_seed(0), n_samples=4)
    np.testing.assert_allclose(scale.numpy(), [2.0, 0.5, 1.0], rtol=0.05)
    assert torch.equal(model.spread_scale, scale)
    assert model.calls and not any(model.calls)  # fitted on the uncalibrated predictive


def test_scale_is_refitted_not_compounded_and_needs_enough_values():
    model = _ConstantModel(2)
    model.spread_scale.fill_(3.0)
    scale = calibrate_spread(model, _batches([2.0, 1.0], sparse_channel=1),
                             generator=torch.Generator().manual_seed(1), n_samples=2)
    assert scale[0] == pytest.approx(2.0, rel=0.05)
    assert scale[1] == 1.0  # < min_values hidden values: left at 1
    with pytest.raises(ValueError, match="n_samples"):
        calibrate_spread(model, [], n_samples=1)
    with pytest.raises(ValueError, match="criterion"):
        calibrate_spread(model, [], criterion="crps")


def test_forecast_split_calibrates_on_the_future_values_only():
    """Spread 2 before the middle of each series, 0.5 after it: forecasts need 0.5."""
    batches = _batches([1.0])
    for b in batches:
        late = (b.times >= 0.5).unsqueeze(-1)
        b.values.copy_(torch.where(late, 0.5 * b.values, 2.0 * b.values))
    model = _ConstantModel(1)
    scale = calibrate_spread(model, batches, forecast_split=0.5, n_samples=2,
                             generator=torch.Generator().manual_seed(2))
    assert scale[0] == pytest.approx(0.5, rel=0.05)
    mixed = calibrate_spread(model, batches, n_samples=2,
                             generator=torch.Generator().manual_seed(2))
    assert 0.6 < float(mixed[0]) < 2.0


def test_model_predict_applies_scale_around_sample_average():
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=3, rec_dim=6, units=8, n_layers=1, gru_units=8,
                      encoder="gru", method="rk4", step_size=0.1,
                      gradient="backprop").double().eval()
    b = _batches([1.0, 1.0], n_series=4, length=5)[0]
    kw = dict(n_samples=6, use_mean=False)
    raw = model.predict(b, b.times, b.lengths, generator=torch.Generator().manual_seed(0), **kw)
    model.spread_scale.copy_(torch.tensor([2.0, 0.5]))
    cal = model.predict(b, b.times, b.lengths, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(cal.mean.mean(0), raw.mean.mean(0))
    torch.testing.assert_close(cal.mean - cal.mean.mean(0),
                               (raw.mean - raw.mean.mean(0)) * torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(cal.obs_std, raw.obs_std * torch.tensor([2.0, 0.5]))
    one = model.predict(b, b.times, b.lengths, n_samples=1)  # posterior mean: no effect
    model.spread_scale.fill_(1.0)
    torch.testing.assert_close(one.mean, model.predict(b, b.times, b.lengths).mean)


def _frame(n_series=40, n_points=15, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_series):
        t = np.sort(rng.uniform(0, 5, n_points))
        parts.append(pd.DataFrame({"id": i, "t": t, "x": np.sin(t + rng.uniform(0, 6))
                                   + 0.1 * rng.standard_normal(n_points)}))
    return pd.concat(parts, ignore_index=True)


TINY = {**_settings.TINY, "solver": "rk4", "batch_size": 16}


def test_estimator_calibrates_on_validation_series_only_when_asked():
    df = _frame()
    on = LatentODERegressor(**TINY, validation_fraction=0.25).fit(df)
    off = LatentODERegressor(**TINY, validation_fraction=0.25, calibrate=False).fit(df)
    no_val = LatentODERegressor(**TINY, validation_fraction=0.0).fit(df)
    a = float(on.model_.spread_scale[0])
    assert a != 1.0 and 0.25 <= a <= 8.0
    assert float(off.model_.spread_scale[0]) == float(no_val.model_.spread_scale[0]) == 1.0
    # same weights, same point predictions; the 90 % band is wider or narrower by about a
    np.testing.assert_allclose(on.predict(df)["x"], off.predict(df)["x"])
    q = (0.05, 0.95)
    w_on = on.predict(df, quantiles=q, n_samples=200).eval("`x_q0.95` - `x_q0.05`")
    w_off = off.predict(df, quantiles=q, n_samples=200).eval("`x_q0.95` - `x_q0.05`")
    assert float(np.median(w_on / w_off)) == pytest.approx(a, rel=0.1)


def test_spread_scale_survives_save_load(tmp_path):
    df = _frame(n_series=20)
    est = LatentODERegressor(**TINY, validation_fraction=0.3).fit(df)
    path = tmp_path / "model.zip"
    est.save(path)
    back = LatentODERegressor.load(path)
    assert torch.equal(back.model_.spread_scale, est.model_.spread_scale)
    q = dict(quantiles=(0.05, 0.95), n_samples=20)
    np.testing.assert_array_equal(back.predict(df, **q).to_numpy(), est.predict(df, **q).to_numpy())
