"""The bound on the validation series that fit the calibration's level
(``max_level_series``, :data:`~latentode.training.calibration.MAX_LEVEL_SERIES`) and the
calibration's progress bar (``verbose``)."""

from __future__ import annotations

import pytest
import torch
from test_calibration import TINY, _frame, _NearestModel, _walk_batches
from test_calibration_structure import _CountingModel, _scaled, _state

from latentode import LatentODERegressor
from latentode.training import calibrate_level, calibrate_spread
from latentode.training.calibration import LEVEL_ROUNDS, MAX_LEVEL_SERIES


def _calibrated(model, val, train, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    calibrate_spread(model, val, n_samples=2, rounds=1, structure=train,
                     max_structure_series=40, structure_rounds=1, structure_samples=3,
                     generator=gen, by_density="validated", **kwargs)
    return _state(model), gen.get_state()


def test_level_series_are_bounded_only_above_the_bound():
    """With no more validation series than the bound, every one fits the level and the numbers
    (and the generator's draws) are those of any larger bound, to the bit; above it, a seeded
    random subset of ``max_level_series`` of them does, in full batches."""
    assert MAX_LEVEL_SERIES == 256
    train = _scaled(_walk_batches(200, seed=1), 0.5)
    val = _walk_batches(60, seed=4)
    default, default_gen = _calibrated(_NearestModel(1), val, train)
    at_bound, at_bound_gen = _calibrated(_NearestModel(1), val, train, max_level_series=60)
    assert torch.equal(default_gen, at_bound_gen)
    for key in default:
        assert torch.equal(default[key], at_bound[key]), key
    model = _CountingModel(1)
    capped, _ = _calibrated(model, val, train, max_level_series=25)
    # the 40 structure series (3 samples), then LEVEL_ROUNDS hiding rounds and one forecast
    # round of 25 of the 60 validation series (2 samples), in one batch each
    val_sizes = [s for s, n in zip(model.sizes, model.samples) if n == 2]
    assert val_sizes == [25] * (LEVEL_ROUNDS + 1)
    assert any(not torch.equal(capped[k], default[k]) for k in default)
    again, _ = _calibrated(_NearestModel(1), val, train, max_level_series=25)
    for key in capped:
        assert torch.equal(capped[key], again[key]), key
    # the structure's factors before the level do not depend on the bound
    other, _ = _calibrated(_NearestModel(1), val, train, seed=0, max_level_series=30)
    assert torch.equal(other["gap_spread.edges"], default["gap_spread.edges"])
    assert torch.equal(other["gap_spread.tail_df"], default["gap_spread.tail_df"])
    with pytest.raises(ValueError, match="max_level_series"):
        calibrate_spread(_NearestModel(1), val, structure=train, max_level_series=0)


def test_calibrate_level_bounds_its_series_too():
    val = _walk_batches(60, seed=4)
    whole, bound, capped = _CountingModel(1), _CountingModel(1), _CountingModel(1)
    levels = [calibrate_level(m, val, n_samples=2, rounds=1,
                              generator=torch.Generator().manual_seed(0), **kw)
              for m, kw in ((whole, {}), (bound, {"max_level_series": 60}),
                            (capped, {"max_level_series": 20}))]
    assert torch.equal(levels[0], levels[1])
    assert sum(whole.sizes) == 60 * (LEVEL_ROUNDS + 1)
    assert capped.sizes == [20] * (LEVEL_ROUNDS + 1)
    with pytest.raises(ValueError, match="max_level_series"):
        calibrate_level(_NearestModel(1), val, max_level_series=0)


def test_progress_bar_while_calibrating_only_when_verbose(capsys):
    train = _scaled(_walk_batches(60, seed=1), 0.5)
    val = _walk_batches(20, seed=4)
    quiet, _ = _calibrated(_NearestModel(1), val, train)
    assert capsys.readouterr().err == ""
    shown, _ = _calibrated(_NearestModel(1), val, train, verbose=1)
    err = capsys.readouterr().err
    assert "calibrating intervals" in err and "100%" in err
    for key in quiet:  # the bar changes nothing
        assert torch.equal(quiet[key], shown[key]), key
    calibrate_spread(_NearestModel(1), val, n_samples=2, rounds=1, verbose=1,
                     generator=torch.Generator().manual_seed(0))  # without structure
    assert "calibrating intervals" in capsys.readouterr().err


def test_estimator_shows_the_calibration_bar_with_its_verbose(capsys):
    df = _frame()
    LatentODERegressor(**{**TINY, "verbose": 1}, validation_fraction=0.25).fit(df)
    err = capsys.readouterr().err
    assert "latentode fit" in err and "calibrating intervals" in err
    LatentODERegressor(**TINY, validation_fraction=0.25).fit(df)
    assert capsys.readouterr().err == ""
