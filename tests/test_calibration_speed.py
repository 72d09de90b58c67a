"""The interval calibration's faster path gives the former path's numbers: every calibration
buffer of the estimators' calibration (and of ``calibrate_spread`` / ``calibrate_level`` called
directly) equals that of the former functions (``tests/_calibration_reference.py``) run on the
same model, series and generator state."""

from __future__ import annotations

import copy

import _calibration_reference as reference
import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY

import latentode.estimator as estimator_module
from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import Batch
from latentode.nn import LatentODE
from latentode.training import calibrate_level, calibrate_spread
from latentode.training import calibration as C

SMALL = {**TINY, "solver": "rk4", "batch_size": 16}


def _frame(n_series: int = 32, n_points: int = 16, seed: int = 0) -> pd.DataFrame:
    """Two channels of noisy sines with 30 % of the values missing, irregular times."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_series):
        t = np.sort(rng.uniform(0, 6, n_points))
        phase, freq = rng.uniform(0, 6), rng.uniform(0.8, 1.6)
        x = np.sin(freq * t + phase) + 0.1 * rng.standard_normal(n_points)
        y = np.cos(freq * t + phase) * rng.uniform(0.5, 2.0) + 0.3 * rng.standard_t(3, n_points)
        x[rng.random(n_points) < 0.3] = np.nan
        y[rng.random(n_points) < 0.3] = np.nan
        parts.append(pd.DataFrame({"id": i, "t": t, "x": x, "y": y}))
    return pd.concat(parts, ignore_index=True)


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if k == "spread_scale" or k.startswith("gap_spread.")}


def _assert_same(new: dict[str, torch.Tensor], old: dict[str, torch.Tensor]) -> None:
    """Equal to 1e-6 relative, with the same infinities (in practice: to the bit)."""
    assert new.keys() == old.keys()
    for key in old:
        a, b = new[key].double(), old[key].double()
        assert torch.equal(torch.isinf(a), torch.isinf(b)), key
        finite = torch.isfinite(b)
        np.testing.assert_allclose(a[finite].numpy(), b[finite].numpy(), rtol=1e-6, atol=0,
                                   err_msg=key)


@pytest.fixture
def both_paths(monkeypatch):
    """Make the estimators' calibration run twice on the same model, series and generator
    state: the former functions on a copy of the model, then the current ones; collect the
    buffers of both ``(new, old)`` per call."""
    seen: list[tuple[dict, dict]] = []
    current = estimator_module.calibrate_spread

    def twice(model, batches, *, generator, **kwargs):
        batches = list(batches)
        if kwargs.get("structure") is not None:
            kwargs["structure"] = list(kwargs["structure"])
        state = generator.get_state()
        former = copy.deepcopy(model)
        with monkeypatch.context() as m:
            reference.use(m)
            current(former, batches, generator=generator, **kwargs)
        generator.set_state(state)
        out = current(model, batches, generator=generator, **kwargs)
        seen.append((_buffers(model), _buffers(former)))
        return out

    monkeypatch.setattr(estimator_module, "calibrate_spread", twice)
    return seen


@pytest.mark.parametrize("params", [
    {},  # the defaults: structure "training", density "validated", hidden values primary
    pytest.param({"forecast_split": 0.6}, marks=pytest.mark.slow),  # forecasts primary
    pytest.param({"calibration_density": False}, marks=pytest.mark.slow),
    pytest.param({"calibration_density": True}, marks=pytest.mark.slow),
    {"calibration_structure": "validation", "forecast_split": 0.5},
], ids=["defaults", "forecast", "no-density", "density", "validation-forecast"])
def test_regressor_calibration_equals_the_former_path(both_paths, params):
    est = LatentODERegressor(**{**SMALL, **params}, validation_fraction=0.3).fit(_frame())
    [(new, old)] = both_paths
    _assert_same(new, old)
    _assert_same(_buffers(est.model_), old)
    assert float(est.model_.spread_scale.sum()) != 2.0  # something was calibrated


def test_classifier_calibration_equals_the_former_path(both_paths):
    df = _frame()
    y = (df.groupby("id")["x"].mean() > 0).astype(int)  # one label per series id
    LatentODEClassifier(**SMALL, classifier="latent", validation_fraction=0.3).fit(df, y)
    [(new, old)] = both_paths
    _assert_same(new, old)


def _model_and_series(seed: int = 0) -> tuple[LatentODE, list[Batch]]:
    """An untrained model (wide, heavy-tailed errors: tails get fitted) and 60 series."""
    torch.manual_seed(seed)
    model = LatentODE(2, latent_dim=2, rec_dim=4, units=8, gru_units=8, encoder="gru",
                      method="rk4")
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(60, 20, generator=g) * 5, dim=1).values
    x = torch.stack([torch.sin(2 * t), torch.cos(t)], -1)
    x = x + 0.2 * torch.distributions.StudentT(2.0).sample(x.shape)
    mask = (torch.rand(x.shape, generator=g) > 0.2).float()
    return model, [Batch(t[i:i + 20], x[i:i + 20] * mask[i:i + 20], mask[i:i + 20],
                         torch.full((20,), 20)) for i in range(0, 60, 20)]


@pytest.mark.parametrize(("criterion", "structure"), [
    ("coverage", False), ("coverage", True), ("likelihood", True),
    pytest.param("likelihood", False, marks=pytest.mark.slow),
])
def test_calibrate_spread_equals_the_former_path(monkeypatch, criterion, structure):
    model, series = _model_and_series()
    kwargs = dict(criterion=criterion, by_density="validated" if structure else True,
                  min_tail_values=50, structure=series[:2] if structure else None,
                  rounds=3, n_samples=8, structure_rounds=3, level_rounds=3)
    former = copy.deepcopy(model)
    with monkeypatch.context() as m:
        reference.use(m)
        calibrate_spread(former, series[2:] if structure else series[:2],
                         generator=torch.Generator().manual_seed(1), **kwargs)
    calibrate_spread(model, series[2:] if structure else series[:2],
                     generator=torch.Generator().manual_seed(1), **kwargs)
    _assert_same(_buffers(model), _buffers(former))


def test_calibrate_level_equals_the_former_path(monkeypatch):
    model, series = _model_and_series(1)
    calibrate_spread(model, series[:2], generator=torch.Generator().manual_seed(2), rounds=3,
                     n_samples=8)
    former = copy.deepcopy(model)
    with monkeypatch.context() as m:
        reference.use(m)
        old = calibrate_level(former, series[2:], generator=torch.Generator().manual_seed(3),
                              n_samples=8, level_rounds=6)
    new = calibrate_level(model, series[2:], generator=torch.Generator().manual_seed(3),
                          n_samples=8, level_rounds=6)
    assert torch.equal(new, old)
    _assert_same(_buffers(model), _buffers(former))


def test_losses_of_mixed_tails_in_chunks_equal_one_call_per_candidate(monkeypatch):
    """The grouping by tails and the chunks of candidates give the former per-candidate
    losses, with tiny chunks too: the coverage counts to the bit, the log-likelihoods to float
    rounding (the Student-t's elementwise functions on other slices of memory may round the
    last bit differently: a few 1e-16 relative)."""
    model, series = _model_and_series(2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        hidden, forecast = C._held_out_rounds(model.eval(), series, ["hidden", "forecast"],
                                              C.HIDE_FRACTIONS, 3, 8, None, g)
    records = hidden + forecast
    tails = [torch.tensor([np.inf, 3.0, 1.5, 30.0], dtype=torch.float64)[
        torch.arange(len(r.resid)) % 4] for r in records]
    groupings = [([r.channel for r in records], 2), ([r.beyond.long() for r in records], 2)]
    obs = C._calibration_parts(model, True, None)[0]
    for criterion in C.CRITERIA:
        old = reference._losses(records, groupings, criterion, obs, tails)
        for chunk in (1 << 21, 100):
            monkeypatch.setattr(C, "_CHUNK_ELEMENTS", chunk)
            new = C._losses(records, groupings, criterion, obs, tails)
            for (loss, count), (old_loss, old_count) in zip(new, old):
                assert torch.equal(count, old_count)
                if criterion == "coverage":
                    assert torch.equal(loss, old_loss)
                else:
                    np.testing.assert_allclose(loss.numpy(), old_loss.numpy(), rtol=1e-13)
