"""The multi-time attention encoder (``encoder="mtan"``): attention numbers, masking and padding
invariance, gradients, the estimators' contract with it, and that it learns."""

import json
import math
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY
from sklearn.metrics import roc_auc_score

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.datasets import make_oscillator_classes
from latentode.nn import LatentODE, MTANEncoder
from latentode.nn.mtan import SCORE_CAP, TimeEmbedding, multi_time_attention
from latentode.nn.registry import ENCODER_CLASSES

C, LATENT = 3, 4


def _make(n_channels=C, **kwargs):
    torch.manual_seed(0)
    kw = dict(rec_dim=6, units=8, gru_units=5, n_ref=7, n_heads=2)
    kw.update(kwargs)
    return MTANEncoder(n_channels, LATENT, **kw).double()


def _batch(dtype=torch.float64):
    """Three series of 7, 4 and 1 valid time points; channel 2 of series 1 never observed."""
    g = torch.Generator().manual_seed(3)
    n = 7
    times = torch.sort(torch.rand(3, n, generator=g, dtype=dtype), 1).values
    mask = (torch.rand(3, n, C, generator=g) < 0.6).to(dtype)
    mask[:, 0, 0] = 1.0
    mask[1, :, 2] = 0.0
    lengths = torch.tensor([7, 4, 1])
    for b, length in enumerate(lengths.tolist()):
        mask[b, length:] = 0.0
        times[b, length:] = times[b, length - 1]
    values = torch.randn(3, n, C, generator=g, dtype=dtype) * mask
    return times, values, mask, lengths


def _reference_attention(scores, values, mask):
    """Per channel, the softmax over the channel's observed time points (a plain loop)."""
    b, h, k, _ = scores.shape
    out = torch.zeros(b, h, k, values.shape[-1], dtype=scores.dtype)
    for i in range(b):
        for c in range(values.shape[-1]):
            obs = mask[i, :, c] > 0
            if obs.any():
                w = torch.softmax(scores[i][..., obs], dim=-1)          # (H, K, n_obs)
                out[i, ..., c] = w @ values[i, obs, c]
    return out


# ------------------------------------------------------------------ the attention
def test_attention_is_the_per_channel_masked_softmax_and_zero_without_observations():
    g = torch.Generator().manual_seed(0)
    scores = SCORE_CAP * torch.tanh(torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
                                    * 20 / SCORE_CAP)   # some scores near the cap
    values = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    mask = (torch.rand(2, 6, 4, generator=g) < 0.5).double()
    mask[0, :, 1] = 0.0                                 # a channel never observed
    mask[1, :, 3] = 0.0
    mask[1, 2, 3] = 1.0                                 # a channel observed once
    values[mask == 0] = float("nan")                    # never read
    scores.requires_grad_(True)
    out = multi_time_attention(scores, values, mask)
    torch.testing.assert_close(out, _reference_attention(scores.detach(), values, mask),
                               rtol=1e-12, atol=1e-12)
    assert (out[0, ..., 1] == 0).all()
    torch.testing.assert_close(out[1, ..., 3], values[1, 2, 3].expand(3, 5))
    out.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_attention_at_the_cap_stays_finite_in_float32():
    # a channel observed only where the score is -cap, others at +cap: weight ratio e^60
    scores = torch.tensor([SCORE_CAP, SCORE_CAP, -SCORE_CAP]).view(1, 1, 1, 3)
    values = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]]])
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    out = multi_time_attention(scores, values, mask)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1.5, 5.0]))


def test_time_embedding_is_linear_then_sinusoidal():
    emb = TimeEmbedding(5)
    t = torch.tensor([0.0, 0.5, 2.0])
    phi = emb(t)
    assert phi.shape == (3, 5)
    w, b = emb.linear.weight.item(), emb.linear.bias.item()
    torch.testing.assert_close(phi[:, 0], w * t + b)
    torch.testing.assert_close(phi[:, 1:], torch.sin(t[:, None] * emb.periodic.weight[:, 0]
                                                     + emb.periodic.bias))
    torch.testing.assert_close(emb.periodic.weight[[0, -1], 0], torch.tensor([1.0, 100.0]))
    with pytest.raises(ValueError, match="dim must be >= 2"):
        TimeEmbedding(1)


# ------------------------------------------------------------------ the encoder
def test_shapes_states_and_reference_times():
    enc = _make()
    times, values, mask, lengths = _batch()
    t0 = times[:, 0] - torch.tensor([0.0, 0.2, 0.1], dtype=torch.float64)
    mu, sigma, states, observed = enc(times, values, mask, lengths, t0, return_states=True)
    assert mu.shape == sigma.shape == (3, LATENT) and (sigma > 0).all()
    assert states.shape == (7, 3, enc.state_dim) and enc.state_dim == 12
    assert observed.shape == (7, 3) and observed.all()
    ref = enc.reference_times(times, lengths, t0)
    torch.testing.assert_close(ref[:, 0], t0)
    torch.testing.assert_close(ref[:, -1], times[[0, 1, 2], [6, 3, 0]])
    torch.testing.assert_close(ref.diff(dim=1).std(dim=1), torch.zeros(3, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    mu2, sigma2 = enc(times, values, mask, lengths, t0)
    torch.testing.assert_close(mu2, mu, rtol=0, atol=0)


def test_padding_garbage_and_batch_mates_do_not_influence_a_series():
    enc = _make()
    times, values, mask, lengths = _batch()
    t0 = times[:, 0] - 0.1
    mu, sigma = enc(times, values, mask, lengths, t0)
    for b in range(3):  # each series alone, unpadded
        n = int(lengths[b])
        mu1, sigma1 = enc(times[b:b + 1, :n], values[b:b + 1, :n], mask[b:b + 1, :n],
                          lengths[b:b + 1], t0[b:b + 1])
        torch.testing.assert_close(mu1[0], mu[b], rtol=0, atol=1e-6)
        torch.testing.assert_close(sigma1[0], sigma[b], rtol=0, atol=1e-6)
    # garbage in the padding (times, values, mask) and in unobserved values (NaN)
    times2, values2, mask2 = times.clone(), values.clone(), mask.clone()
    times2[1, 4:], values2[1, 4:], mask2[1, 4:] = 50.0, 100.0, 1.0
    values2[mask == 0] = float("nan")
    values2[1, 4:] = 100.0
    mu2, sigma2 = enc(times2, values2, mask2, lengths, t0)
    torch.testing.assert_close(mu2, mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma2, sigma, rtol=0, atol=1e-6)
    # appending masked padding steps
    pad = 5
    times3 = torch.cat([times, times[:, -1:].expand(-1, pad)], dim=1)
    values3 = torch.cat([values, torch.randn(3, pad, C, dtype=torch.float64)], dim=1)
    mask3 = torch.cat([mask, torch.zeros(3, pad, C, dtype=torch.float64)], dim=1)
    mu3, sigma3 = enc(times3, values3, mask3, lengths, t0)
    torch.testing.assert_close(mu3, mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma3, sigma, rtol=0, atol=1e-6)


def test_a_never_observed_channel_contributes_nothing():
    """The same encoder with one more channel, never observed: the same q(z_t0)."""
    small = _make()
    big = _make(C + 1)
    h = small.n_heads
    with torch.no_grad():
        for name, p in big.named_parameters():
            if not name.startswith("project.weight"):
                p.copy_(dict(small.named_parameters())[name])
        # feature layout: per head the C (C + 1) attended values, then the observed indicators
        w_small = small.project.weight.view(-1, h + 1, C)
        w_big = big.project.weight.view(-1, h + 1, C + 1)
        w_big[..., :C] = w_small                # the extra channel's columns keep their values
    times, values, mask, lengths = _batch()
    mu, sigma = small(times, values, mask, lengths)
    extra = torch.randn(3, times.shape[1], 1, dtype=torch.float64)
    mu2, sigma2 = big(times, torch.cat([values, extra], -1),
                      torch.cat([mask, torch.zeros_like(extra)], -1), lengths)
    torch.testing.assert_close(mu2, mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma2, sigma, rtol=0, atol=1e-6)
    # and within a series: channel 2 of series 1 is never observed; its attended value is 0
    attended = small.attend(times, values, mask, lengths)
    assert attended.shape == (3, h, small.n_ref, C)
    assert (attended[1, :, :, 2] == 0).all()


def test_observations_of_one_channel_do_not_change_anothers_attention():
    enc = _make()
    times, values, mask, lengths = _batch()
    base = enc.attend(times, values, mask, lengths)
    # series 0: a new time point inside its window where only channel 1 is observed
    t_new = 0.5 * (times[0, 2] + times[0, 3])
    times2 = torch.cat([times[:, :3], torch.stack([t_new, times[1, 3], times[2, 3]])[:, None],
                        times[:, 3:]], dim=1)
    times2[1:, 3] = times[1:, 2]   # other series: repeat an existing time, masked out
    row = torch.zeros(3, 1, C, dtype=torch.float64)
    mask_row = row.clone()
    mask_row[0, 0, 1] = 1.0
    row[0, 0, 1] = 3.0
    values2 = torch.cat([values[:, :3], row, values[:, 3:]], dim=1)
    mask2 = torch.cat([mask[:, :3], mask_row, mask[:, 3:]], dim=1)
    lengths2 = lengths.clone()
    lengths2[0] += 1
    # the other series are rebuilt as they were (their new column is masked, a repeated time)
    out = enc.attend(times2, values2, mask2, lengths2)
    torch.testing.assert_close(out[0, ..., [0, 2]], base[0, ..., [0, 2]], rtol=0, atol=1e-9)
    assert not torch.allclose(out[0, ..., 1], base[0, ..., 1])


def test_shifting_a_series_in_time_does_not_change_its_encoding():
    enc = _make()
    times, values, mask, lengths = _batch()
    t0 = times[:, 0] - 0.05
    mu, sigma = enc(times, values, mask, lengths, t0)
    mu2, sigma2 = enc(times + 3.25, values, mask, lengths, t0 + 3.25)
    torch.testing.assert_close(mu2, mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma2, sigma, rtol=0, atol=1e-6)


def test_gradients_reach_every_parameter_and_stay_finite():
    enc = _make(n_static=2)
    times, values, mask, lengths = _batch()
    static = torch.randn(3, 2, dtype=torch.float64)
    mu, sigma, states, _ = enc(times, values, mask, lengths, static=static, return_states=True)
    (mu.sum() + sigma.log().sum() + states.tanh().sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name
    with pytest.raises(ValueError, match="takes 2 static covariates; got none"):
        enc(times, values, mask, lengths)
    with pytest.raises(ValueError, match=r"static must have shape \(3, 2\)"):
        enc(times, values, mask, lengths, static=static[:, :1])


def test_single_observation_and_sharp_scores_are_finite():
    enc = _make()
    with torch.no_grad():  # a very sharp kernel: raw scores far beyond the cap
        enc.query.weight.mul_(1e3)
        enc.key.weight.mul_(1e3)
    times = torch.tensor([[0.3, 0.3]], dtype=torch.float64)
    values = torch.tensor([[[1.0, 0.0, 0.0], [9.0, 9.0, 9.0]]], dtype=torch.float64)
    mask = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    values.requires_grad_(True)
    mu, sigma = enc(times, values, mask, torch.tensor([1]))
    assert torch.isfinite(mu).all() and torch.isfinite(sigma).all()
    mu.sum().backward()
    assert torch.isfinite(values.grad).all() and (values.grad[0, 1] == 0).all()
    assert values.grad[0, 0, 0] != 0
    # a series with no observed value at all (static-only stays) is encoded, finitely
    mu0, sigma0 = enc(times, values.detach(), torch.zeros_like(mask), torch.tensor([2]))
    assert torch.isfinite(mu0).all() and torch.isfinite(sigma0).all()


def test_registry_and_latent_ode_build_it():
    assert ENCODER_CLASSES["mtan"] is MTANEncoder
    model = LatentODE(3, latent_dim=4, rec_dim=5, units=8, n_layers=1, gru_units=6,
                      encoder="mtan", n_classes=2, head_inputs="latent+summary+pooled")
    assert isinstance(model.encoder, MTANEncoder)
    assert model.encoder.rec_dim == 5 and model.encoder.embedding.dim == 8
    assert model.encoder.project.out_features == 6
    assert model.pooling.dim == 10 and model.classifier.n_pooled == 20
    with pytest.raises(ValueError, match="multiple of n_heads"):
        MTANEncoder(2, 3, units=9, n_heads=2)
    with pytest.raises(ValueError, match="n_ref >= 2"):
        MTANEncoder(2, 3, n_ref=1)


# ------------------------------------------------------------------ the estimators
MTAN = {**TINY, "encoder": "mtan"}


def test_regressor_fit_predict_save_load_pickle(oscillators, tmp_path):
    est = LatentODERegressor(**MTAN).fit(oscillators)
    assert isinstance(est.model_.encoder, MTANEncoder)
    assert np.isfinite(est.history_["train_loss"]).all()
    pred = est.predict(oscillators)
    assert pred.shape[0] == len(oscillators) and np.isfinite(pred[["x", "v"]]).all().all()
    forecast = est.extrapolate(oscillators, n_points=3)
    assert np.isfinite(forecast[["x", "v"]].to_numpy()).all()
    est.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert loaded.get_params()["encoder"] == "mtan"
    pd.testing.assert_frame_equal(loaded.predict(oscillators), pred, check_exact=True)
    twin = pickle.loads(pickle.dumps(est))
    pd.testing.assert_frame_equal(twin.predict(oscillators), pred, check_exact=True)


def test_classifier_with_pooled_states_fits_and_round_trips(tmp_path):
    df, y = make_oscillator_classes(8, random_state=0)
    clf = LatentODEClassifier(**{**MTAN, "head_inputs": "latent+summary+pooled"}).fit(df, y)
    assert clf.model_.classifier.n_pooled == 4 * MTAN["rec_dim"]
    proba = clf.predict_proba(df)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    clf.save(tmp_path / "c.latentode")
    loaded = LatentODEClassifier.load(tmp_path / "c.latentode")
    pd.testing.assert_frame_equal(loaded.predict_proba(df), proba, check_exact=True)


def test_encoder_classifier_with_mtan_separates_two_frequencies():
    df, y = make_oscillator_classes(60, omegas=(1.0, 2.5), random_state=0)
    test, y_test = make_oscillator_classes(40, omegas=(1.0, 2.5), random_state=10)
    clf = LatentODEClassifier(**{**MTAN, "classifier": "encoder", "rec_dim": 12, "units": 24,
                                 "gru_units": 16, "latent_dim": 4, "batch_size": 20,
                                 "max_epochs": 15, "early_stopping": False,
                                 "validation_fraction": 0.0}).fit(df, y)
    proba = clf.predict_proba(test)
    # measured 0.973 (the GRU encoder: 0.969; after one epoch 0.81)
    assert roc_auc_score(y_test.loc[proba.index], proba[1]) > 0.95
    assert math.isfinite(clf.history_["train_loss"][-1])


# ------------------------------------------------------------------ the published sizes
def test_reference_points_and_embedding_size_are_built_as_stated():
    model = LatentODE(3, latent_dim=4, rec_dim=5, units=8, n_layers=1, gru_units=6,
                      encoder="mtan", mtan_ref_points=128, mtan_embed_dim=16)
    enc = model.encoder
    assert enc.n_ref == 128 and enc.embedding.dim == 16
    assert (enc.query.in_features, enc.key.out_features) == (16, 16)
    assert enc.head[0].out_features == 8  # the output head keeps ``units``
    assert model.hparams["mtan_ref_points"] == 128 and model.hparams["mtan_embed_dim"] == 16
    t = torch.tensor([[0.0, 0.3, 1.0]])
    ref = enc.reference_times(t, torch.tensor([3]))
    assert ref.shape == (1, 128) and float(ref[0, -1]) == 1.0
    x, m = torch.randn(1, 3, 3), torch.ones(1, 3, 3)
    _, _, states, observed = enc(t, x, m, torch.tensor([3]), return_states=True)
    assert states.shape == (128, 1, 10) and observed.shape == (128, 1)
    # the defaults are the former network: 64 reference times, an embedding of ``units``
    former = LatentODE(3, latent_dim=4, rec_dim=5, units=8, n_layers=1, gru_units=6,
                       encoder="mtan").encoder
    assert former.n_ref == 64 and former.embedding.dim == 8
    # the other encoders ignore them: the same weights as without
    plain = LatentODE(3, latent_dim=4, rec_dim=5, units=8, n_layers=1, encoder="gru")
    other = LatentODE(3, latent_dim=4, rec_dim=5, units=8, n_layers=1, encoder="gru",
                      mtan_ref_points=9, mtan_embed_dim=4)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="multiple of n_heads, got 9 and 2"):
        MTANEncoder(2, 3, units=8, n_heads=2, embed_dim=9)


SIZED = {**MTAN, "mtan_ref_points": 10, "mtan_embed_dim": 8}


def test_estimators_build_the_sizes_and_round_trip_them(oscillators, tmp_path):
    est = LatentODERegressor(**SIZED).fit(oscillators)
    assert (est.model_.encoder.n_ref, est.model_.encoder.embedding.dim) == (10, 8)
    assert est.model_.encoder.head[0].out_features == MTAN["units"]
    pred = est.predict(oscillators)
    est.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert (loaded.mtan_ref_points, loaded.mtan_embed_dim) == (10, 8)
    assert (loaded.model_.encoder.n_ref, loaded.model_.encoder.embedding.dim) == (10, 8)
    pd.testing.assert_frame_equal(loaded.predict(oscillators), pred, check_exact=True)
    twin = pickle.loads(pickle.dumps(est))
    pd.testing.assert_frame_equal(twin.predict(oscillators), pred, check_exact=True)
    df, y = make_oscillator_classes(8, random_state=0)
    clf = LatentODEClassifier(**{**SIZED, "head_inputs": "latent+summary+pooled"}).fit(df, y)
    assert clf.model_.encoder.n_ref == 10 and clf.model_.encoder.embedding.dim == 8
    assert clf.get_params()["mtan_ref_points"] == 10
    proba = clf.predict_proba(df)
    clf.save(tmp_path / "c.latentode")
    again = LatentODEClassifier.load(tmp_path / "c.latentode")
    pd.testing.assert_frame_equal(again.predict_proba(df), proba, check_exact=True)


def test_files_and_pickles_from_before_the_sizes_load_as_the_former_network(oscillators,
                                                                            tmp_path):
    est = LatentODERegressor(**MTAN).fit(oscillators)
    pred = est.predict(oscillators)
    est.save(tmp_path / "m.latentode")
    with zipfile.ZipFile(tmp_path / "m.latentode") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for key in ("params", "model_hparams"):
        del config[key]["mtan_ref_points"], config[key]["mtan_embed_dim"]
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "old.latentode", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    old = LatentODERegressor.load(tmp_path / "old.latentode")
    assert (old.mtan_ref_points, old.mtan_embed_dim) == (64, None)
    assert old.model_.encoder.n_ref == 64 and old.model_.encoder.embedding.dim == MTAN["units"]
    pd.testing.assert_frame_equal(old.predict(oscillators), pred, check_exact=True)
    # a pickle from before: neither the parameters nor the network's hyper-parameters
    state = est.__getstate__()
    del state["mtan_ref_points"], state["mtan_embed_dim"]
    for key in ("mtan_ref_points", "mtan_embed_dim"):
        state["model_"]["hparams"].pop(key)
    twin = LatentODERegressor.__new__(LatentODERegressor)
    twin.__setstate__(state)
    assert (twin.mtan_ref_points, twin.mtan_embed_dim) == (64, None)
    pd.testing.assert_frame_equal(twin.predict(oscillators), pred, check_exact=True)


@pytest.mark.parametrize("params, match", [
    ({"mtan_ref_points": 1}, r"^mtan_ref_points must be an integer >= 2, got 1\.$"),
    ({"mtan_embed_dim": 1}, r"^mtan_embed_dim must be None or an integer >= 2, got 1\.$"),
    ({"mtan_ref_points": 2.5}, r"^mtan_ref_points must be an integer >= 2, got 2\.5\.$"),
])
def test_bad_sizes_are_refused_before_training(oscillators, params, match):
    with pytest.raises(ValueError, match=match):
        LatentODERegressor(**{**MTAN, **params}).fit(oscillators)
