"""`LatentODERegressor(readout="neighbours")`: prediction methods, files, pickles, learning."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
from _settings import TINY, as_saved_before, rewrite_saved_config
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.evaluation import hide_values, linear_interpolation, mse
from latentode.nn import LatentODE, NeighbourReadout


@pytest.fixture(scope="module")
def fitted(oscillators):
    return LatentODERegressor(**{**TINY, "readout": "neighbours", "obs_dropout": 0.3,
                                 "validation_fraction": 0.25, "readout_aux": 0.5,
                                 "readout_reach": "spacing"}).fit(oscillators)


def test_every_prediction_method(fitted, oscillators):
    assert isinstance(fitted.model_.readout, NeighbourReadout)
    cond, hidden = hide_values(oscillators, 0.3, columns=["x", "v"], random_state=1)
    pred = fitted.predict(cond, quantiles=(0.05, 0.95))
    assert np.isfinite(pred[["x", "v", "x_q0.05", "v_q0.95"]].to_numpy()).all()
    assert (pred["x_q0.05"] <= pred["x"]).all() and (pred["x"] <= pred["x_q0.95"]).all()
    fc = fitted.extrapolate(cond, horizon=1.0, n_points=3, quantiles=(0.5,))
    assert len(fc) == 3 * cond["id"].nunique() and np.isfinite(fc[["x", "v"]]).all().all()
    draws = fitted.sample(cond, n_samples=4, random_state=0)
    assert np.isfinite(draws[["x", "v"]].to_numpy()).all()
    # calibrated: the spread factors were fitted on the corrected means
    assert not fitted.model_.gap_spread.is_identity()
    assert np.isfinite(fitted.score(oscillators))


def test_neighbour_values_move_the_prediction(fitted, oscillators):
    """A prediction between two observations follows them; a far one reads only the latent."""
    df = oscillators[oscillators["id"] == "s0"].reset_index(drop=True)
    moved = df.copy()
    row = len(df) // 2
    moved.loc[row, "x"] = df["x"].iloc[row] + 5.0  # one observation of x moves
    query = df[["id", "t"]].iloc[[row - 1, row, row + 1]]
    a = fitted.extrapolate(df, times=query)["x"].to_numpy()
    b = fitted.extrapolate(moved, times=query)["x"].to_numpy()
    assert np.abs(b - a).max() > 1e-3  # the encoder and the neighbours see the change


def test_save_load_and_pickle_give_identical_predictions(fitted, oscillators, tmp_path):
    path = tmp_path / "readout.latentode"
    fitted.save(path)
    loaded = LatentODERegressor.load(path)
    assert loaded.readout == "neighbours" and loaded.model_.hparams["readout"] == "neighbours"
    assert loaded.readout_aux == 0.5 and loaded.readout_reach == "spacing"
    assert loaded.get_params() == fitted.get_params()
    expect = fitted.predict(oscillators, quantiles=(0.1,))
    np.testing.assert_array_equal(loaded.predict(oscillators, quantiles=(0.1,)).to_numpy(),
                                  expect.to_numpy())
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(oscillators).to_numpy(),
                                  fitted.predict(oscillators).to_numpy())


def test_older_files_without_readout_load_as_latent(oscillators, tmp_path):
    est = LatentODERegressor(**{**TINY, "max_epochs": 1, "readout": "latent"}).fit(oscillators)
    state = est.__getstate__()
    del state["readout"]  # pickled before the parameter existed
    state["model_"]["hparams"].pop("readout")
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert old.readout == "latent" and old.model_.readout is None
    np.testing.assert_array_equal(old.predict(oscillators).to_numpy(),
                                  est.predict(oscillators).to_numpy())


def test_older_saved_files_without_readout_load_as_latent(oscillators, tmp_path):
    """A file saved before ``readout`` existed lacks it in its params and the network's
    hyper-parameters; it loads with the former behaviour (``"latent"``), not today's default,
    and predicts as before."""
    est = LatentODERegressor(**{**TINY, "max_epochs": 1, "readout": "latent"}).fit(oscillators)
    est.save(tmp_path / "new.latentode")

    def edit(config):
        for name in ("readout", "readout_aux", "readout_reach"):
            config["params"].pop(name)
        config["model_hparams"].pop("readout")

    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "old.latentode", edit)
    old = LatentODERegressor.load(tmp_path / "old.latentode")
    assert old.readout == "latent" and old.model_.readout is None
    np.testing.assert_array_equal(old.predict(oscillators).to_numpy(),
                                  est.predict(oscillators).to_numpy())


def test_invalid_readout_is_rejected_before_training(oscillators):
    with pytest.raises(ValueError, match="readout must be one of"):
        LatentODERegressor(**{**TINY, "readout": "nearest"}).fit(oscillators)
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="readout_aux must be a non-negative finite number"):
            LatentODERegressor(**{**TINY, "readout_aux": bad}).fit(oscillators)
    with pytest.raises(ValueError, match="readout_reach must be one of"):
        LatentODERegressor(**{**TINY, "readout_reach": "span"}).fit(oscillators)


def test_files_and_pickles_without_readout_aux_take_its_default(fitted, oscillators, tmp_path):
    """Saved or pickled before ``readout_aux``, ``readout_reach`` and the decoder's noise
    model existed: the defaults (the noise model untrained), same predictions."""
    path = tmp_path / "new.latentode"
    fitted.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    del config["params"]["readout_aux"], config["params"]["readout_reach"]
    members["config.json"] = json.dumps(config)
    weights = st_load(members["weights.safetensors"])
    dropped = [k for k in weights if k.startswith("decoder_noise.")]
    assert dropped == ["decoder_noise.raw"]
    members["weights.safetensors"] = st_save({k: v for k, v in weights.items()
                                              if k not in dropped})
    old_path = tmp_path / "old.latentode"
    with zipfile.ZipFile(old_path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    loaded = LatentODERegressor.load(old_path)
    assert loaded.readout_aux == LatentODERegressor().readout_aux == 1.0
    assert loaded.readout_reach == "window"
    expect = fitted.predict(oscillators).to_numpy()
    np.testing.assert_array_equal(loaded.predict(oscillators).to_numpy(), expect)
    state = fitted.__getstate__()
    del state["readout_aux"], state["readout_reach"]
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert (old.readout_aux, old.readout_reach) == (1.0, "window")
    np.testing.assert_array_equal(old.predict(oscillators).to_numpy(), expect)


def test_classifier_takes_the_option(make_oscillators):
    df = make_oscillators(8, 12, seed=3)
    y = (df.groupby("id")["x"].first() > 0).astype(int)
    clf = LatentODEClassifier(**{**TINY, "max_epochs": 1, "readout": "neighbours",
                                 "ce_weight": 1.0}).fit(df, y)
    assert isinstance(clf.model_.readout, NeighbourReadout)
    assert np.isfinite(clf.predict_proba(df).to_numpy()).all()
    assert np.isfinite(clf.extrapolate(df, horizon=1.0, n_points=2)[["x", "v"]].to_numpy()).all()


def test_neighbours_learn_held_out_values_faster_than_the_latent_readout(make_oscillators):
    """Same data, epochs and seed: the readout learns to fill in hidden values (its untrained
    start, the average of decoder and interpolation, is far worse), much better than the
    decoder alone, and about as well as linear interpolation on these smooth curves (measured:
    untrained 0.182, trained 0.070, latent readout 0.404, linear interpolation 0.078)."""
    df = make_oscillators(24, 30, seed=5, missing=0.3)
    test = make_oscillators(12, 30, seed=6, missing=0.3)
    cond, hidden = hide_values(test, 0.5, columns=["x", "v"], random_state=0)
    cfg = {**TINY, "obs_dropout": 0.5, "lr": 2e-2, "kl_warmup": 2, "validation_fraction": 0.0}
    scores = {}
    for name, readout, epochs in [("untrained", "neighbours", 0), ("latent", "latent", 15),
                                  ("neighbours", "neighbours", 15)]:
        est = LatentODERegressor(**{**cfg, "max_epochs": epochs}, readout=readout).fit(df)
        scores[name] = mse(test, est.predict(cond), hidden, columns=["x", "v"])
    linear = mse(test, linear_interpolation(cond, columns=["x", "v"]), hidden,
                 columns=["x", "v"])
    assert scores["neighbours"] < 0.6 * scores["untrained"], scores
    assert scores["neighbours"] < 0.4 * scores["latent"], scores
    assert scores["neighbours"] < 1.2 * linear, (scores, linear)


def test_reach_starts_at_each_channels_spacing(make_oscillators):
    """``readout_reach="spacing"``: before training, the correction's reach is the channel's
    mean spacing in the series that observe it (model time), the gaps reconstruction shows."""
    df = make_oscillators(6, 20, seed=2, missing=0.4)
    cfg = {**TINY, "max_epochs": 0, "readout": "neighbours", "validation_fraction": 0.0}
    window = LatentODERegressor(**cfg).fit(df)  # the default: 1 model time
    np.testing.assert_array_equal(window.model_.readout.log_reach.detach().numpy(), 0.0)
    est = LatentODERegressor(**cfg, readout_reach="spacing").fit(df)
    expect = []
    for col in ("x", "v"):
        seen = df[df[col].notna()]
        spans = df.groupby("id")["t"].agg(lambda t: t.max() - t.min())
        expect.append(spans.loc[seen["id"].unique()].sum() / len(seen))
    reach = est.model_.readout.log_reach.exp().detach().numpy() * est.time_encoder_.scale_
    np.testing.assert_allclose(reach, expect, rtol=1e-5)
    assert 0.02 < reach.min() and reach.max() < 0.5 * est.time_encoder_.scale_
    # a split readout's one-sided residual fades over the same spacing, whatever the reach
    split = LatentODERegressor(**cfg, readout_sides="split").fit(df)
    np.testing.assert_array_equal(split.model_.readout.log_reach.detach().numpy(), 0.0)
    fade = split.model_.readout.residual_reach.numpy() * split.time_encoder_.scale_
    np.testing.assert_allclose(fade, expect, rtol=1e-5)


def test_readout_sides_split_saves_and_older_files_load_shared(oscillators, tmp_path):
    """``readout_sides="split"`` builds the one-sided readout and survives files and pickles;
    a file or pickle from before the parameter existed lacks it (params and the network's
    hyper-parameters) and loads with the former ``"shared"`` readout, predicting as before."""
    base = {**TINY, "max_epochs": 2, "readout": "neighbours", "forecast_share": 0.5}
    split = LatentODERegressor(**base, readout_sides="split").fit(oscillators)
    assert isinstance(split.model_.readout.one_sided, NeighbourReadout)
    split.save(tmp_path / "split.latentode")
    loaded = LatentODERegressor.load(tmp_path / "split.latentode")
    assert loaded.readout_sides == "split" and loaded.model_.hparams["readout_sides"] == "split"
    np.testing.assert_array_equal(loaded.predict(oscillators).to_numpy(),
                                  split.predict(oscillators).to_numpy())
    shared = LatentODERegressor(**base, readout_sides="shared").fit(oscillators)
    assert shared.model_.readout.one_sided is None
    # the two readouts differ where a channel has one neighbour (forecasts)
    times = oscillators.groupby("id")["t"].max().to_frame("t").reset_index()
    times["t"] += 0.5
    assert not np.allclose(split.extrapolate(oscillators, times=times)[["x", "v"]],
                           shared.extrapolate(oscillators, times=times)[["x", "v"]])
    old, pickled = as_saved_before(shared, "readout_sides", tmp_path, hparam=True)
    expect = shared.predict(oscillators).to_numpy()
    assert old.readout_sides == "shared" and old.model_.readout.one_sided is None
    np.testing.assert_array_equal(old.predict(oscillators).to_numpy(), expect)
    assert pickled.readout_sides == "shared"
    np.testing.assert_array_equal(pickled.predict(oscillators).to_numpy(), expect)
    with pytest.raises(ValueError, match="readout_sides must be one of"):
        LatentODERegressor(**{**TINY, "readout_sides": "both"}).fit(oscillators)


def test_split_readouts_saved_before_offsets_load_with_their_own_one_sided_copy(oscillators,
                                                                               tmp_path):
    """``readout_sides="split"`` now holds the one-sided parameters as offsets from the
    two-sided ones with the bounded one-sided correction (``readout_split="bounded"`` in the
    network's hyper-parameters, saved and loaded); a file saved with ``"offset"`` (the same
    tensors, the full correction) keeps it and predicts as it did; a file or pickle from
    before (no ``readout_split``: the one-sided parameters a copy of their own, under the same
    tensor names) loads with ``"copy"`` and predicts as the network it was, which the offset
    reading of the same tensors would not."""
    base = {**TINY, "readout": "neighbours", "readout_sides": "split", "forecast_share": 0.5}
    est = LatentODERegressor(**base).fit(oscillators)
    assert est.model_.hparams["readout_split"] == "bounded"
    est.save(tmp_path / "bounded.latentode")
    assert LatentODERegressor.load(tmp_path / "bounded.latentode").model_.readout.split == \
        "bounded"
    times = oscillators.groupby("id")["t"].max().to_frame("t").reset_index()
    times["t"] += 0.5

    def forecasts(model):
        return model.extrapolate(oscillators, times=times)[["x", "v"]].to_numpy(dtype=float)

    bounded_forecasts = forecasts(est)
    # the network as the "offset" code held it: the same tensors (but the spacing of the
    # bounded residual, which it lacks), the full correction
    offset_net = LatentODE(**{**est.model_.hparams, "readout_split": "offset"})
    tensors = {k: v for k, v in est.model_.state_dict().items()
               if k != "readout.residual_reach"}
    offset_net.load_state_dict(tensors)
    est.model_ = offset_net.eval()
    offset_preds, offset_forecasts = est.predict(oscillators).to_numpy(), forecasts(est)
    assert not np.allclose(offset_forecasts, bounded_forecasts)
    est.save(tmp_path / "offset.latentode")
    loaded = LatentODERegressor.load(tmp_path / "offset.latentode")
    assert loaded.model_.readout.split == "offset"
    np.testing.assert_array_equal(loaded.predict(oscillators).to_numpy(), offset_preds)
    np.testing.assert_array_equal(forecasts(loaded), offset_forecasts)
    # the network as the former code held it: the same tensors, the one-sided ones a copy
    former = LatentODE(**{**est.model_.hparams, "readout_split": "copy"})
    former.load_state_dict(tensors)
    est.model_ = former.eval()
    expect, expect_forecasts = est.predict(oscillators).to_numpy(), forecasts(est)
    assert not np.allclose(expect_forecasts, offset_forecasts)
    est.save(tmp_path / "copy.latentode")

    def edit(config):
        config["model_hparams"].pop("readout_split")

    rewrite_saved_config(tmp_path / "copy.latentode", tmp_path / "old.latentode", edit)
    from_file = LatentODERegressor.load(tmp_path / "old.latentode")
    state = est.__getstate__()
    state["model_"]["hparams"].pop("readout_split")
    from_pickle = LatentODERegressor.__new__(LatentODERegressor)
    from_pickle.__setstate__(pickle.loads(pickle.dumps(state)))
    for old in (from_file, from_pickle):
        assert old.model_.readout.split == "copy"
        assert old.model_.hparams["readout_split"] == "copy"
        np.testing.assert_array_equal(old.predict(oscillators).to_numpy(), expect)
        np.testing.assert_array_equal(forecasts(old), expect_forecasts)
