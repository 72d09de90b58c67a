"""Validation under the mixed task (issue #15): ``validation_tasks``, ``evaluate_loss(
forecast_share=...)`` and what ``fit_model`` records and watches with ``forecast_share > 0``."""

from __future__ import annotations

import pytest
import torch
from _settings import batch_loader as _loader
from _settings import ragged_batch as _ragged
from _settings import tiny_latent_ode as _tiny_model

from latentode.data.batch import Batch
from latentode.training import evaluate_loss, fit_model, split_forecast, validation_tasks
from latentode.training.objective import _n_past


def _waves(n=8, length=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length).repeat(n, 1)
    return Batch(t, torch.sin(5 * t + torch.rand(n, 1, generator=g) * 6).unsqueeze(-1),
                 torch.ones(n, length, 1), torch.full((n,), length))


def test_tasks_of_each_training_mode():
    batch = _ragged(n=40, length=12, seed=2)
    assert validation_tasks(batch) == [(batch, None, 1.0)]
    (cond, target, w), = validation_tasks(batch, forecast_split=0.4)
    ref_cond, ref_target = split_forecast(batch, 0.4)
    assert w == 1.0 and torch.equal(cond.lengths, ref_cond.lengths)
    assert torch.equal(target.values, ref_target.values)
    (whole, none, w0), (past, scored, w1) = validation_tasks(batch, forecast_share=0.3,
                                                             forecast_range=(0.3, 0.6))
    assert whole is batch and none is None and scored is batch
    assert (w0, w1) == (pytest.approx(0.7), 0.3)
    assert past.times is batch.times and past.values is batch.values
    # series b is split at 0.3 + 0.3 * frac(0.5 + 0.618... b): 0.45 for the first series
    u = torch.remainder(0.5 + torch.arange(40, dtype=torch.float64) * 0.6180339887498949, 1.0)
    assert torch.equal(past.lengths, _n_past(batch, 0.3 + 0.3 * u))
    assert past.lengths[0] == _n_past(batch, 0.45)[0]
    # the split points spread over the range: 40 series, every tenth of it holds 3 to 5
    counts = torch.histc(u, bins=10, min=0.0, max=1.0)
    assert int(counts.min()) >= 3 and int(counts.max()) <= 5
    # the same batch gets the same splits every time; share 1 drops the reconstruction
    again = validation_tasks(batch, forecast_share=0.3, forecast_range=(0.3, 0.6))[1][0]
    assert torch.equal(again.lengths, past.lengths)
    (only, scored, w), = validation_tasks(batch, forecast_share=1.0, forecast_range=(0.3, 0.6))
    assert w == 1.0 and scored is batch and torch.equal(only.lengths, past.lengths)
    with pytest.raises(ValueError, match="give one"):
        validation_tasks(batch, forecast_split=0.5, forecast_share=0.5)
    with pytest.raises(ValueError, match="forecast_range must be"):
        validation_tasks(batch, forecast_share=0.5, forecast_range=(0.6, 0.2))


def test_mixed_validation_is_the_weighted_sum_of_its_two_terms():
    """Loss, nll and point MSE of the mix equal ``0.75 * reconstruction + 0.25 * the series
    scored whole from their pasts`` computed by hand, the noise drawn in that order."""
    model, batch = _tiny_model(), _waves(n=5)
    res = evaluate_loss(model, [batch], 3, generator=torch.Generator().manual_seed(4),
                        forecast_share=0.25, forecast_range=(0.3, 0.7))
    g = torch.Generator().manual_seed(4)
    past = validation_tasks(batch, forecast_share=0.25, forecast_range=(0.3, 0.7))[1][0]
    model.eval()
    with torch.no_grad():
        rec = model.loss(batch, 3, 1.0, generator=g)
        fc = model.loss(past, 3, 1.0, target=batch, generator=g)
        sq_rec = float(model.point_squared_error(batch).sum())
        sq_fc = float(model.point_squared_error(past, target=batch).sum())
    n = float(batch.mask.sum())
    assert res["n_obs"] == pytest.approx(n)
    assert res["loss"] == pytest.approx(0.75 * float(rec.loss) + 0.25 * float(fc.loss), rel=1e-6)
    assert res["nll"] == pytest.approx(0.75 * float(rec.nll) + 0.25 * float(fc.nll), rel=1e-6)
    assert res["mse"] == pytest.approx((0.75 * sq_rec + 0.25 * sq_fc) / n, rel=1e-6)
    # the two terms differ, so the mix is neither of them
    assert abs(float(fc.loss) - float(rec.loss)) > 1.0 and abs(sq_fc - sq_rec) > 0.01
    plain = evaluate_loss(model, [batch], 3, generator=torch.Generator().manual_seed(4))
    assert plain["loss"] == pytest.approx(float(rec.loss), rel=1e-6)


def _frozen_fit(share, epochs=3):
    """A fit that cannot move the weights (lr=0): what each epoch's validation draws shows."""
    data = _waves(n=8)
    model = _tiny_model()
    hist = fit_model(model, _loader(data), _loader(data), max_epochs=epochs, lr=0.0,
                     kl_warmup=0, verbose=0, early_stopping=False, forecast_share=share,
                     forecast_range=(0.3, 0.7), generator=torch.Generator().manual_seed(0))
    return model, data, hist


def test_mixed_validation_draws_the_same_noise_at_every_epoch():
    model, data, hist = _frozen_fit(0.5)
    vals = hist["val_loss"]
    assert len(set(vals)) == 1  # weights unchanged: every epoch scores the same number
    ref = evaluate_loss(model, _loader(data)(), 3, generator=torch.Generator().manual_seed(0),
                        forecast_share=0.5, forecast_range=(0.3, 0.7))
    assert vals[0] == pytest.approx(ref["loss"], rel=1e-9)
    assert hist["val_mse"][0] == pytest.approx(ref["mse"], rel=1e-9)


def test_the_defaults_validation_is_unchanged():
    """Without the mix, validation is reconstruction drawing its noise from the training
    generator after each epoch's training steps, as before the mix's validation existed (so
    its values move from epoch to epoch under the same weights)."""
    model, data, hist = _frozen_fit(0.0)
    g = torch.Generator().manual_seed(0)
    expected = []
    with torch.no_grad():
        for _ in range(3):
            for batch in _loader(data)():  # the training steps' draws
                model.draw_z0_noise(3, batch.batch_size, g)
            expected.append(evaluate_loss(model, _loader(data)(), 3, generator=g)["loss"])
    assert hist["val_loss"] == pytest.approx(expected, rel=1e-9)
    assert len(set(hist["val_loss"])) == 3
