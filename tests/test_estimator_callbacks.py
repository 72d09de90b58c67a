"""The estimators' ``callbacks`` parameter: called every epoch, can stop training, checked in
``fit``, cloned and pickled with the estimator, not saved by ``save``."""

import pickle

import numpy as np
import pandas as pd
import pytest
from _settings import TINY
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.training import Callback


class Recorder(Callback):
    """Records each epoch's record and the training mode of the model it was given."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after

    def on_train_begin(self, model):
        self.epochs, self.losses, self.training = [], [], []
        self.ended = None

    def on_epoch_end(self, epoch, record, model):
        self.epochs.append(epoch)
        self.losses.append(record["train_loss"])
        self.training.append(model.training)
        return self.stop_after is not None and epoch + 1 >= self.stop_after

    def on_train_end(self, history, model):
        self.ended = history.n_epochs


def test_callback_sees_every_epoch_and_the_history(oscillators):
    rec = Recorder()
    est = LatentODERegressor(**{**TINY, "max_epochs": 3, "early_stopping": False},
                             callbacks=[rec]).fit(oscillators)
    assert rec.epochs == [0, 1, 2] and rec.ended == 3
    np.testing.assert_array_equal(rec.losses, est.history_["train_loss"])
    assert all(rec.training)  # called while the network trains


def test_callback_returning_true_stops_and_best_weights_are_kept(oscillators):
    est = LatentODERegressor(**{**TINY, "max_epochs": 6, "early_stopping": False},
                             callbacks=[Recorder(stop_after=2)]).fit(oscillators)
    assert est.history_.n_epochs == 2
    assert est.history_.stopped_reason == "callback"
    assert np.isfinite(est.predict(oscillators)["x"].to_numpy()).all()


def test_plain_function_callback_and_same_model_as_without(oscillators):
    """A callable is accepted, and a callback that only watches changes nothing."""
    seen = []
    with_cb = LatentODERegressor(**TINY, callbacks=[lambda e, r, m: seen.append(e)]
                                 ).fit(oscillators)
    without = LatentODERegressor(**TINY).fit(oscillators)
    assert seen == [0, 1]
    pd.testing.assert_frame_equal(with_cb.predict(oscillators), without.predict(oscillators))


@pytest.mark.parametrize("bad, match", [
    (Recorder(), r"callbacks must be None or a list of callbacks"),
    ([3], r"callbacks\[0\] must have on_epoch_end"),
    ([Recorder(), Recorder], r"callbacks\[1\] is the class Recorder; pass an instance"),
])
def test_bad_callbacks_are_refused_before_training(oscillators, bad, match):
    rec = Recorder()
    est = LatentODERegressor(**TINY, callbacks=bad)
    with pytest.raises(ValueError, match=match):
        est.fit(oscillators)
    assert not hasattr(est, "model_") and not hasattr(rec, "epochs")


def test_classifier_takes_callbacks(oscillators):
    y = pd.Series(np.arange(oscillators["id"].nunique()) % 2,
                  index=np.sort(oscillators["id"].unique()))
    rec = Recorder()
    LatentODEClassifier(**TINY, callbacks=[rec]).fit(oscillators, y)
    assert rec.epochs == [0, 1]


def test_clone_pickle_and_save(oscillators, tmp_path):
    rec = Recorder()
    est = LatentODERegressor(**TINY, callbacks=[rec]).fit(oscillators)
    cloned = clone(est)
    assert len(cloned.callbacks) == 1 and cloned.callbacks[0] is not rec  # a copy, unfitted
    back = pickle.loads(pickle.dumps(est))
    assert isinstance(back.callbacks[0], Recorder) and back.callbacks[0].epochs == [0, 1]
    path = tmp_path / "m.latentode"
    with pytest.warns(UserWarning, match="callbacks are not saved") as caught:
        est.save(path)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    loaded = LatentODERegressor.load(path)
    assert loaded.callbacks is None
    pd.testing.assert_frame_equal(loaded.predict(oscillators), est.predict(oscillators))


def test_pickle_from_before_the_parameter_loads_without_callbacks(oscillators):
    est = LatentODERegressor(**TINY).fit(oscillators)
    state = est.__getstate__()
    del state["callbacks"]  # pickled before the parameter existed
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert old.get_params()["callbacks"] is None
    pd.testing.assert_frame_equal(old.predict(oscillators), est.predict(oscillators))
    old.set_params(max_epochs=1).fit(oscillators)  # and it trains again
