"""Calibration structure from the training series, level from the validation series
(:func:`latentode.training.calibrate_spread` with ``structure=``; the estimators'
``calibration_structure``)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from test_calibration import TINY, _coverages, _frame, _NearestModel, _walk_batches

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import Batch, rebatch
from latentode.nn.observation import GaussianObservation
from latentode.training import calibrate_spread
from latentode.training.calibration import (
    HIDE_FRACTIONS,
    LEVEL_GRID,
    LEVEL_ROUNDS,
    STRUCTURE_MIN_ROUNDS,
    STRUCTURE_ROUNDS,
    STRUCTURE_SAMPLES,
    STRUCTURE_VALUES,
    _cap_values,
    _fit_level,
    _held_out_rounds,
    _merged,
    _structure_series,
)


def _scaled(batches, factor):
    """The same series with every value times ``factor`` (errors of the nearest-observation
    model times ``factor``: what a model that has seen the series would do better)."""
    from latentode.data.batch import Batch

    return [Batch(b.times, b.values * factor, b.mask, b.lengths) for b in batches]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_structure_from_series_with_half_the_errors_gets_the_validation_level():
    """Training series whose errors are exactly half the validation's (the same random walks,
    values halved): their factors alone give intervals half as wide as needed (50 % intervals
    cover about 26 %); with the level from 100 validation series every kind's multiplier is
    2 (the grid's step 0.9 %, within 4 %), the factors are exactly the training series' own
    times it, and the intervals of 400 new series are within 3 points of nominal, as the
    validation series' own calibration gives (measured: multipliers 1.99 / 2.01; coverage
    50.9 / 89.7 hidden, 50.1 / 89.3 forecasts, against 27.5 / 59.7 and 26.6 / 58.4 with the
    training series' factors alone and 50.3 / 89.7, 49.9 / 89.1 with the validation's).
    Compared here without the budget of values; with it (6 hiding rounds on these 200 series,
    3 forecast rounds, 4000 values of each kind): multipliers 2.01 / 1.97, coverage 51.1 /
    90.2, 49.8 / 89.4."""
    train = _scaled(_walk_batches(200, seed=1), 0.5)
    val, test = _walk_batches(100, seed=4), _walk_batches(400, seed=2)
    alone = _NearestModel(1)
    # the training series' own calibration, with the rounds and samples of structure series
    # (without a budget of values: every value of STRUCTURE_MIN_ROUNDS rounds of each kind)
    calibrate_spread(alone, train, rounds=STRUCTURE_MIN_ROUNDS, n_samples=STRUCTURE_SAMPLES,
                     generator=torch.Generator().manual_seed(0))
    narrow = _coverages(alone, test, seed=3)
    assert narrow["interp 50"] < 35 and narrow["extrap 90"] < 70, narrow
    model = _NearestModel(1)
    calibrate_spread(model, val, n_samples=2, generator=torch.Generator().manual_seed(0),
                     structure=train, structure_rounds=STRUCTURE_MIN_ROUNDS,
                     structure_values=None)
    level = model.spread_scale / alone.spread_scale
    np.testing.assert_allclose(level.item(), 2.0, rtol=0.04)
    ratio = model.gap_spread.factors / alone.gap_spread.factors  # (kinds, buckets, C)
    forecast_level = level * ratio[1, 0]
    np.testing.assert_allclose(forecast_level.item(), 2.0, rtol=0.04)
    torch.testing.assert_close(ratio[0], torch.ones_like(ratio[0]))  # hidden: the channel's
    torch.testing.assert_close(ratio[1], ratio[1, :1].expand_as(ratio[1]))  # one per kind
    assert torch.equal(model.gap_spread.edges, alone.gap_spread.edges)
    for key, value in _coverages(model, test, seed=3).items():
        assert abs(value - float(key.split()[1])) <= 3.0, (key, value)
    budget = _NearestModel(1)
    calibrate_spread(budget, val, n_samples=2, generator=torch.Generator().manual_seed(0),
                     structure=train)
    for key, value in _coverages(budget, test, seed=3).items():
        assert abs(value - float(key.split()[1])) <= 3.0, (key, value)


def test_structure_without_gap_factors_takes_one_pooled_multiplier():
    """Without the gap factors, one multiplier for every value (a value of LEVEL_GRID)."""
    train = _scaled(_walk_batches(200, seed=1), 0.5)
    val = _walk_batches(100, seed=4)
    alone, model = _NearestModel(1), _NearestModel(1)
    calibrate_spread(alone, train, by_gap=False, rounds=STRUCTURE_MIN_ROUNDS,
                     n_samples=STRUCTURE_SAMPLES, generator=torch.Generator().manual_seed(0))
    calibrate_spread(model, val, by_gap=False, n_samples=2,
                     generator=torch.Generator().manual_seed(0), structure=train,
                     structure_rounds=STRUCTURE_MIN_ROUNDS, structure_values=None)
    assert model.gap_spread.is_identity()
    level = (model.spread_scale / alone.spread_scale).item()
    assert level == pytest.approx(2.0, rel=0.04)
    assert torch.isclose(LEVEL_GRID, torch.tensor(level, dtype=torch.float64),
                         rtol=1e-6).any()


def test_structure_series_are_a_bounded_seeded_subset():
    batches = _walk_batches(200, seed=1)
    every = torch.cat([b.values for b in batches])  # (200, 30, 1)
    device = torch.device("cpu")
    sub = _structure_series(batches, 30, torch.Generator().manual_seed(0), device)
    again = _structure_series(batches, 30, torch.Generator().manual_seed(0), device)
    other = _structure_series(batches, 30, torch.Generator().manual_seed(1), device)
    picked = torch.cat([b.values for b in sub])
    assert picked.shape == (30, 30, 1)
    # distinct series of the input, in their order
    rows = [int(torch.nonzero((every == row).all(-1).all(-1))[0]) for row in picked]
    assert len(set(rows)) == 30 and rows == sorted(rows)
    assert torch.equal(picked, torch.cat([b.values for b in again]))
    assert not torch.equal(picked, torch.cat([b.values for b in other]))
    whole = _structure_series(batches, 200, None, device)  # no more than the bound: all
    assert torch.equal(torch.cat([b.values for b in whole]), every)
    # the picked rows of the four input batches of 50 make full batches of 50
    sub = _structure_series(batches, 120, torch.Generator().manual_seed(0), device)
    assert [b.batch_size for b in sub] == [50, 50, 20]


def test_rebatch_regroups_series_in_order_each_padded_to_its_longest():
    t = torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.5, 0.5], [1.0, 3.0, 3.0]])
    v = torch.arange(9.0).view(3, 3, 1)
    m = torch.ones(3, 3, 1)
    a = Batch(t[:2, :3], v[:2], m[:2], torch.tensor([3, 1]), labels=torch.tensor([0, 1]))
    b = Batch(t[2:, :2], v[2:, :2], m[2:, :2], torch.tensor([2]), labels=torch.tensor([1]))
    out = rebatch([b, a], 2)
    assert [x.batch_size for x in out] == [2, 1]
    # b's series, padded from 2 to 3 points: its last time repeated, values and mask 0
    torch.testing.assert_close(out[0].times, torch.tensor([[1.0, 3.0, 3.0], [0.0, 1.0, 2.0]]))
    torch.testing.assert_close(out[0].values[0, :, 0], torch.tensor([6.0, 7.0, 0.0]))
    torch.testing.assert_close(out[0].mask[0, :, 0], torch.tensor([1.0, 1.0, 0.0]))
    assert out[0].labels.tolist() == [1, 0] and out[0].lengths.tolist() == [2, 3]
    # the last batch holds a's second series alone, cut to its own length 1
    assert out[1].times.shape == (1, 1) and out[1].values[0, 0, 0] == 3.0
    assert out[1].static is None and out[1].labels.tolist() == [1]
    with pytest.raises(ValueError, match="batch_size"):
        rebatch([a], 0)


def test_structure_rounds_run_until_the_budget_of_values_per_channel_and_kind():
    """Dense series stop at STRUCTURE_MIN_ROUNDS rounds, sparse ones (fewer values per
    round) take more, up to ``rounds``; the count of held-out values decides, per kind."""
    batches = _walk_batches(100, seed=1)  # 2 batches of 50 series x 30 values, one channel
    model = _NearestModel(1)

    def rounds_and_counts(budget, max_rounds=STRUCTURE_ROUNDS):
        hidden, forecast = _held_out_rounds(
            model, batches, ["hidden", "forecast"], HIDE_FRACTIONS, max_rounds, 2, None,
            torch.Generator().manual_seed(0), budget, STRUCTURE_MIN_ROUNDS)
        counts = [[len(r.resid) for r in rec] for rec in (hidden, forecast)]
        return [len(c) // len(batches) for c in counts], [sum(c) for c in counts]

    # every round: 10 / 30 / 50 % of the 3000 values hidden (but the first of each series),
    # forecasts after 50 / 30 / 70 % of each window
    rounds, counts = rounds_and_counts(None)
    assert rounds == [STRUCTURE_ROUNDS, STRUCTURE_ROUNDS] and counts == [5176, 8888]
    assert rounds_and_counts(1)[0] == [STRUCTURE_MIN_ROUNDS, STRUCTURE_MIN_ROUNDS]
    # 2551 hidden values and 4444 forecasts in three rounds (hidden: 277, 1142, 2551, 2846,
    # 3708, 5176 after each round; forecasts 1492, 3507, 4444, 5936, 7951, 8888)
    assert rounds_and_counts(2551) == ([3, 3], [2551, 4444])
    assert rounds_and_counts(2552) == ([4, 3], [2846, 4444])
    assert rounds_and_counts(3000) == ([5, 3], [3708, 4444])
    assert rounds_and_counts(4445) == ([6, 4], [5176, 5936])
    assert rounds_and_counts(10 ** 6) == ([6, 6], [5176, 8888])  # never met: all rounds
    assert rounds_and_counts(10 ** 6, 2) == ([2, 2], [1142, 3507])  # fewer rounds allowed
    # the default budget: these 100 series take 6 hiding rounds and 3 forecast rounds
    assert rounds_and_counts(STRUCTURE_VALUES)[0] == [6, 3]


def test_cap_values_keeps_a_seeded_random_subset_per_channel():
    hidden, _ = _held_out_rounds(_NearestModel(1), _walk_batches(100, seed=1), ["hidden"],
                                 HIDE_FRACTIONS, 3, 2, None, torch.Generator().manual_seed(0))
    # as two channels: the values of odd positions count as channel 1
    recs = [r._replace(channel=torch.arange(len(r.channel)) % 2) for r in hidden]
    n = [int(sum((r.channel == c).sum() for r in recs)) for c in (0, 1)]
    assert n == [1277, 1274]
    capped = _cap_values(recs, 2, 1000, torch.Generator().manual_seed(0))
    again = _cap_values(recs, 2, 1000, torch.Generator().manual_seed(0))
    other = _cap_values(recs, 2, 1000, torch.Generator().manual_seed(1))
    kept = torch.cat([r.channel for r in capped])
    assert torch.bincount(kept).tolist() == [1000, 1000]
    resid = torch.cat([r.resid for r in capped])
    assert torch.equal(resid, torch.cat([r.resid for r in again]))
    assert not torch.equal(resid, torch.cat([r.resid for r in other]))
    # a subset, in order: every kept value is one of its record's, samples with it
    for r, c in zip(recs, capped):
        at = torch.nonzero(r.resid.unsqueeze(1) == c.resid.unsqueeze(0))[:, 0]
        assert len(at) == len(c.resid) and bool((at.diff() > 0).all())
        assert torch.equal(r.dev[:, at], c.dev) and torch.equal(r.gap[at], c.gap)
    # a channel under the cap keeps every value; no channel over it: the records themselves
    capped = _cap_values(recs, 2, 1275, torch.Generator().manual_seed(0))
    assert torch.bincount(torch.cat([r.channel for r in capped])).tolist() == [1275, 1274]
    assert _cap_values(recs, 2, 2000, None) is recs


class _CountingModel(_NearestModel):
    """Records the number of series and of posterior samples of each prediction."""

    def __init__(self, n_channels):
        super().__init__(n_channels)
        self.sizes = []
        self.samples = []

    def predict(self, cond, *args, **kwargs):
        self.sizes.append(cond.values.shape[0])
        self.samples.append(kwargs["n_samples"])
        return super().predict(cond, *args, **kwargs)


def test_structure_bound_and_seeded_reproducibility_of_the_factors():
    train = _scaled(_walk_batches(200, seed=1), 0.5)
    val = _walk_batches(20, seed=4)
    model = _CountingModel(1)
    calibrate_spread(model, val, n_samples=2, rounds=1, structure=train,
                     max_structure_series=40, structure_rounds=1, structure_samples=3,
                     generator=torch.Generator().manual_seed(0), level_rounds=None)
    # one hidden and one forecast round over the 40 structure series, then over the 20
    assert sum(model.sizes) == 2 * 40 + 2 * 20
    assert sum(s for s, n in zip(model.sizes, model.samples) if n == 3) == 2 * 40
    # by default the structure series get STRUCTURE_SAMPLES samples and 3 to
    # STRUCTURE_ROUNDS rounds of each kind (40 series hold fewer than STRUCTURE_VALUES
    # held-out values in 6 rounds: all 6; with a small budget 3), whatever the validation
    # series' rounds and samples
    assert (STRUCTURE_MIN_ROUNDS, STRUCTURE_ROUNDS, STRUCTURE_SAMPLES) == (3, 6, 16)
    for budget, n_rounds in ((STRUCTURE_VALUES, 6), (100, 3)):
        model = _CountingModel(1)
        calibrate_spread(model, val, n_samples=2, rounds=1, structure=train,
                         max_structure_series=40, structure_values=budget,
                         generator=torch.Generator().manual_seed(0))
        by_samples = {n: sum(s for s, m in zip(model.sizes, model.samples) if m == n)
                      for n in set(model.samples)}
        # the validation series: LEVEL_ROUNDS hiding rounds for the level, ``rounds`` of
        # forecasts
        assert by_samples == {16: 2 * n_rounds * 40, 2: (LEVEL_ROUNDS + 1) * 20}
    states = []
    for _ in range(2):
        m = _NearestModel(1)
        calibrate_spread(m, val, n_samples=2, structure=train, max_structure_series=40,
                         generator=torch.Generator().manual_seed(5))
        states.append(_state(m))
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    with pytest.raises(ValueError, match="max_structure_series"):
        calibrate_spread(_NearestModel(1), val, structure=train, max_structure_series=0)
    with pytest.raises(ValueError, match="structure_rounds"):
        calibrate_spread(_NearestModel(1), val, structure=train, structure_rounds=0)
    with pytest.raises(ValueError, match="structure_samples"):
        calibrate_spread(_NearestModel(1), val, structure=train, structure_samples=1)
    with pytest.raises(ValueError, match="structure_values"):
        calibrate_spread(_NearestModel(1), val, structure=train, structure_values=0)
    with pytest.raises(ValueError, match="level_rounds"):
        calibrate_spread(_NearestModel(1), val, structure=train, level_rounds=0)


def test_level_rounds_average_out_the_hidden_values_draw():
    """The level of 15 validation series (their errors twice the training series', so the
    right level is 2) moves with the random choice of their hidden values: over ten draws on
    one structure, its standard deviation (log) is 0.023 with 6 hiding rounds and 0.014 with
    LEVEL_ROUNDS = 24 (the grid's step is 0.009); both average 2 within 2 %. The forecasts'
    rounds (fixed splits) are the same in both."""
    train = _scaled(_walk_batches(200, seed=1), 0.5)
    val = _walk_batches(15, seed=4)
    structure = _NearestModel(1)
    calibrate_spread(structure, train, rounds=STRUCTURE_MIN_ROUNDS, n_samples=STRUCTURE_SAMPLES,
                     generator=torch.Generator().manual_seed(0))
    obs = GaussianObservation(1, obs_std=1.0)
    spread = {}
    for rounds in (6, LEVEL_ROUNDS):
        levels = []
        for seed in range(10):
            hidden, forecast = _held_out_rounds(
                structure, val, ["hidden", "forecast"], HIDE_FRACTIONS, 6, 2, None,
                torch.Generator().manual_seed(seed), hidden_rounds=rounds)
            assert len(hidden) == rounds and len(forecast) == 6  # one batch of 15
            model = copy.deepcopy(structure)
            levels.append(_fit_level(model, model.gap_spread, _merged(hidden + forecast), None,
                                     "coverage", obs, 20)[0])
        log = torch.log(torch.stack(levels))
        assert math.exp(log.mean()) == pytest.approx(2.0, rel=0.02), rounds
        spread[rounds] = float(log.std())
    assert spread[LEVEL_ROUNDS] < 0.7 * spread[6], spread


def test_level_rounds_leave_the_validation_path_alone():
    """Without ``structure`` every factor is fitted on ``rounds`` rounds: ``level_rounds``
    changes nothing, bit for bit."""
    val = _walk_batches(20, seed=4)
    states = []
    for level_rounds in (None, 3, LEVEL_ROUNDS):
        model = _NearestModel(1)
        calibrate_spread(model, val, n_samples=2, generator=torch.Generator().manual_seed(0),
                         level_rounds=level_rounds)
        states.append(_state(model))
    for state in states[1:]:
        for key in states[0]:
            assert torch.equal(states[0][key], state[key]), key


@pytest.mark.parametrize("cls", [LatentODERegressor, LatentODEClassifier])
def test_estimator_calibration_structure_changes_the_spread_not_the_means(cls):
    df = _frame(n_series=30)
    kw = dict(TINY, validation_fraction=0.3)
    fit_kw = {}
    if cls is LatentODEClassifier:
        fit_kw = {"y": (df.groupby("id")["x"].first() > 0).astype(int)}
    # "training" is the default since 2026-11-30 (files saved before load "validation")
    assert cls().calibration_structure == "training"
    assert cls._added_params()["calibration_structure"] == "validation"
    default = cls(**kw).fit(df, **fit_kw)
    train = cls(**kw, calibration_structure="training").fit(df, **fit_kw)
    valid = cls(**kw, calibration_structure="validation").fit(df, **fit_kw)
    for name, buf in default.model_.state_dict().items():
        assert torch.equal(buf, train.model_.state_dict()[name]), name
    assert not torch.equal(train.model_.spread_scale, valid.model_.spread_scale)
    # calibration leaves the weights, hence the point predictions, alone
    for name, p in valid.model_.named_parameters():
        assert torch.equal(p, train.model_.get_parameter(name)), name
    if cls is LatentODERegressor:
        np.testing.assert_array_equal(valid.predict(df)["x"], train.predict(df)["x"])
    with pytest.raises(ValueError, match="calibration_structure"):
        cls(**kw, calibration_structure="both").fit(df, **fit_kw)
