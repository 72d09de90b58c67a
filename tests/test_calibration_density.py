"""The density factor of the interval calibration: a factor of the number of observations a
series conditions on (:meth:`latentode.nn.spread.GapSpread.density`,
``calibrate_spread(..., by_density=True)``, the estimators' ``calibration_density``), and the
validation series' choice of how much of its slope to keep (``by_density="validated"``)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from test_calibration import TINY, _batches, _frame, _NearestModel, _walk_batches

from latentode import LatentODERegressor
from latentode.batch import Batch
from latentode.nn.model import PredictOutput
from latentode.nn.spread import DENSITY_SHRINKAGES, GapSpread, observation_counts, observation_gaps
from latentode.training import calibrate_spread
from latentode.training.objective import drop_observations


class _SparsityModel(_NearestModel):
    """The nearest-observation model plus a per-series offset of standard deviation
    ``6 / n``, ``n`` the number of values it conditions on (of 30): a posterior that fewer
    observations pin down less well, whatever the gap to the nearest one (0.22 with 27 values,
    0.4 with 15, 0.67 with 9)."""

    def __init__(self, n_channels: int) -> None:
        super().__init__(n_channels)
        self.noise = torch.Generator().manual_seed(11)

    def predict(self, cond, times, lengths, n_samples=1, generator=None, use_mean=True,
                calibrated=True):
        out = super().predict(cond, times, lengths, n_samples, generator, use_mean, calibrated)
        n = observation_counts(cond).clamp(min=1.0)  # (B, C)
        sd = 6.0 / n
        offset = torch.randn(n.shape, generator=self.noise, dtype=n.dtype) * sd
        return PredictOutput(mean=out.mean + offset.unsqueeze(1), obs_std=out.obs_std,
                             intensity=None)


class _StructureOnlySparsity(_SparsityModel):
    """:class:`_SparsityModel` on the series that start before t = 5 (the structure series),
    a per-series offset of constant standard deviation 0.4 (``6 / 15``) on later ones (the
    validation and test series): a count dependence that only the training series show."""

    def predict(self, cond, times, lengths, n_samples=1, generator=None, use_mean=True,
                calibrated=True):
        out = _NearestModel.predict(self, cond, times, lengths, n_samples, generator, use_mean,
                                    calibrated)
        n = observation_counts(cond).clamp(min=1.0)  # (B, C)
        sd = torch.where(cond.times[:, :1] < 5, 6.0 / n, torch.full_like(n, 0.4))
        offset = torch.randn(n.shape, generator=self.noise, dtype=n.dtype) * sd
        return PredictOutput(mean=out.mean + offset.unsqueeze(1), obs_std=out.obs_std,
                             intensity=None)


def _later(batches, dt=10.0):
    """``batches`` with every time ``dt`` later (the same gaps: the same queries)."""
    return [Batch(b.times + dt, b.values, b.mask, b.lengths) for b in batches]


def _hidden_coverage(model, batches, fraction, seed):
    """Coverage (%) of the 50 % / 90 % intervals of ``fraction`` hidden values (Gaussian
    predictive: the samples are identical)."""
    from scipy.stats import norm

    g = torch.Generator().manual_seed(seed)
    hits = {50: [], 90: []}
    for batch in batches:
        cond = drop_observations(batch, fraction, g, keep_first=True)
        held = (batch.mask - cond.mask) > 0
        pred = model.predict(cond, batch.times, batch.lengths, n_samples=2)
        z = ((batch.values - pred.mean[0]) / pred.obs_std.expand_as(batch.values))[held].abs()
        for level in hits:
            hits[level].append(z <= norm.ppf(0.5 + level / 200))
    return tuple(round(100 * float(torch.cat(h).double().mean()), 1) for h in hits.values())


def test_density_factor_holds_the_intervals_at_every_hiding_rate():
    """Errors that grow as fewer values are observed, beyond the gap to the nearest one
    (:class:`_SparsityModel`). Calibrated on 200 series (hiding 10 / 30 / 50 % in turn) and
    checked on 400 others at each hiding rate: without the density factor the 50 % interval
    is too wide at 10 % hidden and too narrow at 50 % and 70 % (measured 60.8 / 56.1 / 42.9 /
    28.4 at 10 / 30 / 50 / 70 %; the 90 % one 96.0 / 93.2 / 83.6 / 64.7); with it (slopes 0.70
    inside the window, 0.50 for forecasts) every interval is within 3 points of nominal up to
    50 % (measured 49.9 / 90.6, 51.4 / 90.7, 48.2 / 89.2) and the 70 %, beyond the
    calibration's range, within 6 (44.9 / 85.6)."""
    val, test = _walk_batches(200, seed=1), _walk_batches(400, seed=2)
    rates = (0.1, 0.3, 0.5, 0.7)
    model = _SparsityModel(1)
    calibrate_spread(model, val, n_samples=2, generator=torch.Generator().manual_seed(0))
    assert not model.gap_spread.has_density()
    plain = [_hidden_coverage(model, test, r, seed=3) for r in rates]
    assert plain[0][0] > 58 and plain[2][0] < 45 and plain[3][0] < 35, plain
    model = _SparsityModel(1)
    calibrate_spread(model, val, n_samples=2, generator=torch.Generator().manual_seed(0),
                     by_density=True)
    slope = model.gap_spread.density_slope
    assert model.gap_spread.has_density() and float(slope[0]) >= 0.5, slope
    dense = [_hidden_coverage(model, test, r, seed=3) for r in rates]
    for (c50, c90), rate in zip(dense, rates):
        tol = 3.0 if rate <= 0.5 else 6.0
        assert abs(c50 - 50) <= tol and abs(c90 - 90) <= tol, (rate, dense)


def test_density_keeps_slope_zero_where_the_count_does_not_matter():
    """Independent N(0, 1) values predicted from the nearest observation: the error (variance
    2 plus the model's 0.09) is the same whatever the number of observations, so
    ``by_density`` keeps both slopes at 0 and every factor to the bit (also with the structure
    from other series); the reference is each channel's geometric mean count."""
    val, train = _batches([1.0], n_series=100, seed=1), _batches([1.0], n_series=200, seed=4)
    for structure in (None, train):
        models = []
        for by_density in (False, True):
            model = _NearestModel(1)
            calibrate_spread(model, val, n_samples=2, structure=structure,
                             generator=torch.Generator().manual_seed(0), by_density=by_density)
            models.append(model)
        plain, dense = models
        assert torch.equal(dense.gap_spread.density_slope, torch.zeros(2))
        assert not dense.gap_spread.has_density()
        assert 9 < float(dense.gap_spread.density_ref[0]) < 19  # of 20 values, 10-50 % hidden
        for key, value in plain.state_dict().items():
            if key != "gap_spread.density_ref":
                assert torch.equal(dense.state_dict()[key], value), key


def test_density_factor_multiplies_the_gap_factor_per_query():
    """``GapSpread.calibration``: each query with a gap gets its cell's factor times
    ``(n / n_ref) ** -b`` of its kind, ``n`` its series' observations of the channel; queries
    at an observed time keep 1."""
    spread = GapSpread(2)
    spread.edges.copy_(torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]))
    spread.factors.copy_(torch.linspace(1.0, 2.0, 16).view(2, 4, 2))
    assert spread.is_identity() is False
    times = torch.linspace(0, 1, 8).repeat(2, 1)
    mask = torch.ones(2, 8, 2)
    mask[0, 1:4, 0] = 0  # series 0 observes channel 0 five times
    mask[1, ::2, 1] = 0  # series 1 observes channel 1 four times
    cond = Batch(times, torch.randn(2, 8, 2), mask, torch.tensor([8, 8]))
    query = torch.tensor([[0.0, 0.5, 1.3], [0.0, 0.5, 1.3]])
    before, _ = spread.calibration(cond, query)
    spread.density_slope.copy_(torch.tensor([0.5, 0.25]))
    spread.density_ref.copy_(torch.tensor([4.0, 2.0]))
    assert spread.has_density()
    after, _ = spread.calibration(cond, query)
    counts = observation_counts(cond)
    assert torch.equal(counts, torch.tensor([[5.0, 8.0], [8.0, 4.0]]))
    gap, beyond = observation_gaps(cond, query)
    slope = torch.where(beyond, 0.25, 0.5).unsqueeze(-1)  # (B, M, 1)
    expected = torch.where(gap > 0, before * (counts.unsqueeze(1) / spread.density_ref)
                           ** -slope, torch.ones_like(before))
    torch.testing.assert_close(after, expected)
    assert bool((gap > 0).any()) and bool((gap == 0).any()) and bool(beyond.any())
    spread.reset()
    assert spread.is_identity() and torch.equal(spread.density_ref, torch.ones(2))


def test_estimator_density_survives_save_load_and_older_files_load_without_it(tmp_path):
    """``calibration_density=True``: the fitted slopes and references are saved and loaded
    with the model (the same quantiles); a file without them (saved before they existed) loads
    with no density factor; pickles from before the parameter get False."""
    import inspect

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    names = list(inspect.signature(LatentODERegressor).parameters)
    assert names[names.index("forecast_mode") + 1] == "calibration_density"  # at the end
    assert LatentODERegressor._added_params()["calibration_density"] is False
    df = _frame(n_series=30)
    est = LatentODERegressor(**TINY, validation_fraction=0.3, calibration_density=True).fit(df)
    spread = est.model_.gap_spread
    assert float(spread.density_ref.min()) > 1.0  # fitted: the channels' typical counts
    spread.density_slope.copy_(torch.tensor([0.3, 0.2]))  # whatever the tiny fit chose
    path = tmp_path / "model.zip"
    est.save(path)
    back = LatentODERegressor.load(path)
    assert back.calibration_density is True
    assert torch.equal(back.model_.gap_spread.density_slope, spread.density_slope)
    assert torch.equal(back.model_.gap_spread.density_ref, spread.density_ref)
    q = dict(quantiles=(0.05, 0.95), n_samples=20)
    half = df[df["t"] < 2.5]
    np.testing.assert_array_equal(back.predict(half, **q).to_numpy(),
                                  est.predict(half, **q).to_numpy())
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        state = st_load(archive.read("weights.safetensors"))
    state = {k: v for k, v in state.items() if "density" not in k}
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("weights.safetensors", st_save(state))
    legacy = LatentODERegressor.load(old)
    assert not legacy.model_.gap_spread.has_density()
    assert torch.equal(legacy.model_.gap_spread.factors, spread.factors)
    state = est.__getstate__()
    state.pop("calibration_density")
    fresh = LatentODERegressor.__new__(LatentODERegressor)
    fresh.__setstate__(state)
    assert fresh.calibration_density is False


def _gated(model_cls, val, structure):
    """The model calibrated with each ``by_density`` option, the same draws."""
    out = {}
    for option in (False, True, "validated"):
        model = model_cls(1)
        calibrate_spread(model, val, structure=structure, n_samples=2, structure_samples=2,
                         generator=torch.Generator().manual_seed(0), by_density=option)
        out[option] = model
    return out


def test_validated_density_keeps_the_slope_the_validation_series_share():
    """Structure (200 series), validation (100) and test series (400) of one
    :class:`_SparsityModel`: the structure's slopes (0.75 inside the window, 0.35 for
    forecasts) fit the validation series too, so both kinds keep all of it (losses of none /
    half / all of it measured 682 / 162 / 4.9 inside, 409 / 214 / 77 for forecasts) and the
    calibration is that of ``by_density=True`` to the bit."""
    models = _gated(_SparsityModel, _walk_batches(100, seed=5), _walk_batches(200, seed=1))
    gated, full = models["validated"].gap_spread, models[True].gap_spread
    assert float(full.density_slope[0]) >= 0.5 and float(full.density_slope[1]) > 0
    assert torch.equal(gated.density_shrink, torch.ones(2))
    losses = gated.density_losses  # (shrinkages, kinds)
    assert losses.shape == (len(DENSITY_SHRINKAGES), 2) and DENSITY_SHRINKAGES[-1] == 1.0
    assert bool((losses[-1] < 0.5 * losses[0]).all()), losses
    assert torch.equal(full.density_losses, torch.zeros(3, 2))  # no choice made with True
    full_state = models[True].state_dict()
    for key, value in models["validated"].state_dict().items():
        if key not in ("gap_spread.density_shrink", "gap_spread.density_losses"):
            assert torch.equal(value, full_state[key]), key


def test_validated_density_drops_a_slope_the_validation_series_do_not_share():
    """The structure series' offsets shrink with the count, the validation and test series'
    do not (:class:`_StructureOnlySparsity`): the structure proposes the same slopes, the
    validation series keep none of them (losses of none / half / all measured 16 / 300 / 964
    inside the window, 5.8 / 34 / 136 for forecasts), and the intervals are those of no
    density factor; with the slopes kept (``True``) the 50 % / 90 % intervals of test values
    cover 34.0 / 72.3 % at 10 % hidden and 57.5 / 94.4 % at 50 %, without them 44.1 / 86.4
    and 52.9 / 90.6."""
    models = _gated(_StructureOnlySparsity, _later(_walk_batches(100, seed=5)),
                    _walk_batches(200, seed=1))
    gated, full = models["validated"].gap_spread, models[True].gap_spread
    assert float(full.density_slope[0]) >= 0.5 and float(full.density_slope[1]) > 0
    assert torch.equal(gated.density_shrink, torch.zeros(2))
    assert not gated.has_density()
    losses = gated.density_losses
    assert bool((losses[0] < losses[1]).all() and (losses[1] < losses[2]).all()), losses
    plain_state = models[False].state_dict()
    for key, value in models["validated"].state_dict().items():
        if not key.startswith(("gap_spread.density_",)):
            assert torch.equal(value, plain_state[key]), key
    test = _later(_walk_batches(400, seed=2))
    sparse_full, sparse_gated = (_hidden_coverage(models[k], test, 0.1, seed=3)
                                 for k in (True, "validated"))
    dense_full, dense_gated = (_hidden_coverage(models[k], test, 0.5, seed=3)
                               for k in (True, "validated"))
    assert sparse_full[1] < 80 and sparse_gated[1] > 84, (sparse_full, sparse_gated)
    assert dense_full[0] > 55 and abs(dense_gated[0] - 50) < 4, (dense_full, dense_gated)


def test_validated_density_keeps_none_of_the_slope_when_the_validation_series_cannot_tell():
    """One validation series in one round of each kind: no tercile of the count has 20
    held-out values, every shrinkage's loss is 0, and the tie goes to the smallest
    (no density factor); so too with no held-out value at all. Without ``structure``
    ``"validated"`` is True; another string is a ValueError naming the argument."""
    train = _walk_batches(200, seed=1)
    one = [Batch(b.times[:1], b.values[:1], b.mask[:1], b.lengths[:1])
           for b in _walk_batches(1, seed=5)]
    model = _SparsityModel(1)
    calibrate_spread(model, one, structure=train, n_samples=2, structure_samples=2, rounds=1,
                     level_rounds=1, generator=torch.Generator().manual_seed(0),
                     by_density="validated")
    assert torch.equal(model.gap_spread.density_losses, torch.zeros(3, 2))
    assert torch.equal(model.gap_spread.density_shrink, torch.zeros(2))
    assert not model.gap_spread.has_density()
    single = [Batch(b.times[:, :1], b.values[:, :1], b.mask[:, :1], torch.tensor([1]))
              for b in one]  # one observation: no held-out value at all
    model = _SparsityModel(1)
    calibrate_spread(model, single, structure=train, n_samples=2, structure_samples=2,
                     generator=torch.Generator().manual_seed(0), by_density="validated")
    assert torch.equal(model.gap_spread.density_shrink, torch.zeros(2))
    assert not model.gap_spread.has_density()
    val = _walk_batches(100, seed=5)
    plain = {}
    for option in (True, "validated"):
        plain[option] = _SparsityModel(1)
        calibrate_spread(plain[option], val, n_samples=2,
                         generator=torch.Generator().manual_seed(0), by_density=option)
    for key, value in plain[True].state_dict().items():
        assert torch.equal(plain["validated"].state_dict()[key], value), key
    with pytest.raises(ValueError, match="by_density must be one of"):
        calibrate_spread(_SparsityModel(1), val, by_density="validate")


def test_estimator_validated_density_survives_save_load_and_pickles(tmp_path):
    """``calibration_density="validated"``: the shrinkages and losses are saved and loaded with
    the model; files saved before they existed load with shrinkage 1 and losses 0; the
    parameter refuses other strings, naming it."""
    import pickle

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    df = _frame(n_series=30)
    est = LatentODERegressor(**TINY, validation_fraction=0.3,
                             calibration_density="validated").fit(df)
    spread = est.model_.gap_spread
    spread.density_slope.copy_(torch.tensor([0.15, 0.0]))  # whatever the tiny fit chose
    spread.density_shrink.copy_(torch.tensor([0.5, 0.0]))
    spread.density_losses.copy_(torch.tensor([[3.0, 1.0], [2.0, 4.0], [5.0, 6.0]]))
    path = tmp_path / "model.zip"
    est.save(path)
    back = LatentODERegressor.load(path)
    assert back.calibration_density == "validated"
    for name in ("density_slope", "density_shrink", "density_losses"):
        assert torch.equal(getattr(back.model_.gap_spread, name), getattr(spread, name)), name
    again = pickle.loads(pickle.dumps(est))
    assert torch.equal(again.model_.gap_spread.density_losses, spread.density_losses)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        state = st_load(archive.read("weights.safetensors"))
    state = {k: v for k, v in state.items()
             if not k.endswith(("density_shrink", "density_losses"))}
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("weights.safetensors", st_save(state))
    legacy = LatentODERegressor.load(old).model_.gap_spread
    assert torch.equal(legacy.density_shrink, torch.ones(2))
    assert torch.equal(legacy.density_losses, torch.zeros(3, 2))
    assert torch.equal(legacy.density_slope, spread.density_slope)
    with pytest.raises(ValueError, match="calibration_density"):
        LatentODERegressor(**TINY, calibration_density="validate").fit(df)
