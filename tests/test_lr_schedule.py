"""``lr_schedule`` and ``min_lr``: the learning rate of every epoch (training/schedule.py), as
the optimiser ran it (the history's ``"lr"``), saved, restarted by a warm start, checked."""

import math
import pickle

import pandas as pd
import pytest
from _settings import TINY
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.datasets import make_oscillator_classes
from latentode.training import lr_at


def _cosine(e, n, lr, low):
    return lr if e == 0 else low + (lr - low) * (1 + math.cos(math.pi * (e / (n - 1)))) / 2


def _lrs(est):
    return [r["lr"] for r in est.history_.records]


def _half_then_decay(epoch, max_epochs):
    """Module level, so a pickle of an estimator holding it loads."""
    return 1.0 if epoch < max_epochs // 2 else 0.5


def test_lr_at_follows_the_formulas():
    lr, low = 0.02, 0.001
    got = [lr_at("cosine", e, 7, lr, low) for e in range(7)]
    assert got == [_cosine(e, 7, lr, low) for e in range(7)]
    assert got[0] == lr and got[-1] == low  # min_lr exactly at the last epoch
    assert got[3] == pytest.approx((lr + low) / 2, abs=1e-15)  # the midpoint
    assert all(a > b for a, b in zip(got, got[1:]))
    assert lr_at("cosine", 6, 7, lr) == pytest.approx(lr / 100, rel=1e-12)  # min_lr=None
    assert lr_at("cosine", 0, 1, lr, low) == lr  # one epoch: lr
    lin = [lr_at("linear", e, 5, lr, low) for e in range(5)]
    assert lin == pytest.approx([0.02, 0.01525, 0.0105, 0.00575, 0.001], abs=1e-15)
    assert lr_at(_half_then_decay, 3, 6, lr) == 0.01
    assert lr_at(lambda e, n: 0.01, 0, 6, lr, low) == low  # a callable's floor
    assert lr_at(lambda e, n: 0.0, 0, 6, lr) == 0.0  # no floor by default


def test_cosine_is_what_the_optimiser_runs_and_reaches_min_lr(oscillators):
    est = LatentODERegressor(**{**TINY, "max_epochs": 6}, lr=0.02, early_stopping=False,
                             lr_schedule="cosine", min_lr=0.002).fit(oscillators)
    got = _lrs(est)
    assert len(got) == 6
    assert got == [_cosine(e, 6, 0.02, 0.002) for e in range(6)]  # exactly
    assert got[0] == 0.02 and got[-1] == 0.002
    # min_lr=None: a 100-fold anneal
    est = LatentODERegressor(**{**TINY, "max_epochs": 3}, lr=0.02, early_stopping=False,
                             lr_schedule="cosine").fit(oscillators)
    assert _lrs(est) == pytest.approx([0.02, 0.0101, 0.0002], rel=1e-12)


def test_linear_and_callable_schedules(oscillators):
    est = LatentODERegressor(**{**TINY, "max_epochs": 5}, lr=0.02, early_stopping=False,
                             lr_schedule="linear", min_lr=0.0).fit(oscillators)
    assert _lrs(est) == pytest.approx([0.02, 0.015, 0.01, 0.005, 0.0], abs=1e-15)
    est = LatentODERegressor(**{**TINY, "max_epochs": 4}, lr=0.02, early_stopping=False,
                             lr_schedule=_half_then_decay).fit(oscillators)
    assert _lrs(est) == [0.02, 0.02, 0.01, 0.01]


def test_none_reproduces_the_constant_and_decayed_fits(oscillators):
    """lr_schedule=None is the former training to the bit; a constant callable sets the same
    rate at every epoch and so gives the same fit; lr_decay keeps its floor lr / 10 unless
    min_lr says otherwise."""
    params = {**TINY, "max_epochs": 4, "early_stopping": False, "random_state": 3}
    plain = LatentODERegressor(**params).fit(oscillators)
    same = LatentODERegressor(**params, lr_schedule=lambda e, n: 1.0).fit(oscillators)
    assert _lrs(plain) == _lrs(same) == [0.01] * 4
    pd.testing.assert_frame_equal(plain.predict(oscillators), same.predict(oscillators),
                                  check_exact=True)
    cosine = LatentODERegressor(**params, lr_schedule="cosine").fit(oscillators)
    assert not cosine.predict(oscillators).equals(plain.predict(oscillators))
    decay = LatentODERegressor(**params, lr_decay=0.2).fit(oscillators)
    assert _lrs(decay) == pytest.approx([0.01, 0.002, 0.001, 0.001])  # floor lr / 10
    decay = LatentODERegressor(**params, lr_decay=0.2, min_lr=1e-4).fit(oscillators)
    assert _lrs(decay) == pytest.approx([0.01, 0.002, 0.0004, 0.0001])
    # a pickle from before the parameters existed loads with them None and predicts as before
    state = pickle.loads(pickle.dumps(plain)).__getstate__()
    del state["lr_schedule"], state["min_lr"]
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert old.lr_schedule is None and old.min_lr is None
    pd.testing.assert_frame_equal(old.predict(oscillators), plain.predict(oscillators),
                                  check_exact=True)


def test_warm_start_restarts_the_schedule(oscillators):
    est = LatentODERegressor(**{**TINY, "max_epochs": 4}, lr=0.02, early_stopping=False,
                             lr_schedule="cosine", min_lr=0.002).fit(oscillators)
    est.set_params(warm_start=True, max_epochs=3, lr=0.01)
    est.fit(oscillators)
    got = _lrs(est)
    assert got[:4] == [_cosine(e, 4, 0.02, 0.002) for e in range(4)]
    # the second call anneals afresh over its own 3 epochs, from its lr to min_lr
    assert got[4:] == [_cosine(e, 3, 0.01, 0.002) for e in range(3)]


def test_early_stopping_ends_the_schedule_early(oscillators):
    est = LatentODERegressor(**{**TINY, "max_epochs": 40}, lr=0.02, early_stopping=True,
                             patience=1, lr_schedule="cosine").fit(oscillators)
    got = _lrs(est)
    assert len(got) < 40
    assert got == [_cosine(e, 40, 0.02, 0.02 * 0.01) for e in range(len(got))]


def test_params_round_trip_save_load_pickle_clone(oscillators, tmp_path):
    est = LatentODERegressor(**TINY, lr_schedule="cosine", min_lr=1e-3).fit(oscillators)
    assert clone(est).get_params()["lr_schedule"] == "cosine"
    est.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert (loaded.lr_schedule, loaded.min_lr) == ("cosine", 1e-3)
    pd.testing.assert_frame_equal(loaded.predict(oscillators), est.predict(oscillators),
                                  check_exact=True)
    back = pickle.loads(pickle.dumps(est))
    assert (back.lr_schedule, back.min_lr) == ("cosine", 1e-3)
    # a callable pickles (module level) but cannot be saved as JSON
    est.set_params(lr_schedule=_half_then_decay)
    assert pickle.loads(pickle.dumps(est)).lr_schedule is _half_then_decay
    with pytest.raises(ValueError, match="Cannot save parameter lr_schedule"):
        est.save(tmp_path / "c.latentode")


@pytest.mark.parametrize(("params", "message"), [
    ({"lr_schedule": "cosine", "lr_decay": 0.99},
     "lr_schedule='cosine' and lr_decay=0.99 are two learning-rate schedules"),
    ({"lr_schedule": "step"}, r"lr_schedule must be None, one of \('cosine', 'linear'\) or a "
                              "callable, got 'step'"),
    ({"lr_schedule": 1.0}, r"lr_schedule must be None, one of .* or a callable, got 1.0"),
    ({"lr_schedule": "cosine", "min_lr": -1e-3},
     "min_lr must be None or a non-negative finite number, got -0.001"),
    ({"lr_schedule": "cosine", "min_lr": float("nan")},
     "min_lr must be None or a non-negative finite number, got nan"),
    ({"lr_schedule": "cosine", "min_lr": 0.1}, r"min_lr must lie in \[0, lr\] = \[0, 0.01\]"),
    ({"lr_schedule": lambda e, n: float("nan")}, r"lr_schedule\(0, 2\) must return a finite"),
    ({"lr_schedule": lambda e, n: -1.0}, r"lr_schedule\(0, 2\) must return a finite"),
])
def test_bad_schedules_are_value_errors(oscillators, params, message):
    with pytest.raises(ValueError, match=message):
        LatentODERegressor(**TINY, **params).fit(oscillators)


def test_classifier_takes_the_schedule():
    df, y = make_oscillator_classes(8, random_state=0)
    est = LatentODEClassifier(**{**TINY, "max_epochs": 3}, lr=0.02, early_stopping=False,
                              lr_schedule="cosine", min_lr=0.002).fit(df, y)
    assert _lrs(est) == [_cosine(e, 3, 0.02, 0.002) for e in range(3)]
    assert LatentODEClassifier._added_params()["lr_schedule"] is None
    assert LatentODEClassifier._added_params()["min_lr"] is None
    with pytest.raises(ValueError, match="two learning-rate schedules"):
        LatentODEClassifier(**TINY, lr_schedule="linear", lr_decay=0.9).fit(df, y)
