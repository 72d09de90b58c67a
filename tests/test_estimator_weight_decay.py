"""The regressor's ``weight_decay``: an L2 penalty of the optimiser, saved, cloned, checked."""

import pickle

import pandas as pd
import pytest
from _settings import TINY
from sklearn.base import clone

from latentode import LatentODERegressor


def _norm(est):
    return sum(float(p.detach().pow(2).sum()) for p in est.model_.parameters())


def test_weight_decay_shrinks_the_weights_and_round_trips(oscillators, tmp_path):
    params = {**TINY, "max_epochs": 6, "lr": 0.05, "early_stopping": False, "random_state": 0}
    plain = LatentODERegressor(**params).fit(oscillators)
    decayed = LatentODERegressor(**params, weight_decay=1.0).fit(oscillators)
    assert _norm(decayed) < 0.7 * _norm(plain)
    assert clone(decayed).get_params()["weight_decay"] == 1.0
    decayed.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert loaded.weight_decay == 1.0
    first = decayed.predict(oscillators)
    pd.testing.assert_frame_equal(loaded.predict(oscillators), first, check_exact=True)
    # a pickle from before the parameter existed fits as before (no decay)
    state = pickle.loads(pickle.dumps(plain)).__getstate__()
    del state["weight_decay"]
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert old.weight_decay == 0.0
    pd.testing.assert_frame_equal(old.predict(oscillators), plain.predict(oscillators),
                                  check_exact=True)


@pytest.mark.parametrize("value", [-1e-3, float("nan"), float("inf")])
def test_bad_weight_decay_is_a_value_error(oscillators, value):
    with pytest.raises(ValueError, match="weight_decay must be a non-negative finite number"):
        LatentODERegressor(**TINY, weight_decay=value).fit(oscillators)
