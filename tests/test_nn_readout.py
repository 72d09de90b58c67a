"""The neighbour readout: context features (``channel_neighbours``) and ``NeighbourReadout``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentode.batch import Batch
from latentode.nn import LatentODE, NeighbourReadout, channel_neighbours

INF = math.inf


def _reference(times, values, mask, lengths, query, strict):
    """Loops over series, queries and channels: the neighbours by definition."""
    b, m = query.shape
    c = values.shape[-1]
    out = {k: np.zeros((b, m, c)) for k in ("pv", "pg", "nv", "ng")}
    for i in range(b):
        n = lengths[i]
        for j in range(m):
            q = query[i, j]
            for d in range(c):
                obs = [k for k in range(n) if mask[i, k, d] > 0]
                before = [k for k in obs if (times[i, k] < q if strict else times[i, k] <= q)]
                after = [k for k in obs if (times[i, k] > q if strict else times[i, k] >= q)]
                if before:
                    k = before[-1]
                    out["pv"][i, j, d], out["pg"][i, j, d] = values[i, k, d], q - times[i, k]
                else:
                    out["pv"][i, j, d], out["pg"][i, j, d] = 0.0, INF
                if after:
                    k = after[0]
                    out["nv"][i, j, d], out["ng"][i, j, d] = values[i, k, d], times[i, k] - q
                else:
                    out["nv"][i, j, d], out["ng"][i, j, d] = 0.0, INF
    return out


def _hand_batch():
    # one series, times 0..3; x observed at 0 (value 1) and 2 (value 3); y at 3 only (value 5);
    # w never observed
    times = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    values = torch.zeros(1, 4, 3, dtype=torch.float64)
    mask = torch.zeros(1, 4, 3, dtype=torch.float64)
    values[0, 0, 0], values[0, 2, 0], values[0, 3, 1] = 1.0, 3.0, 5.0
    mask[0, 0, 0] = mask[0, 2, 0] = mask[0, 3, 1] = 1.0
    return Batch(times, values, mask, torch.tensor([4]))


def test_neighbours_hand_computed_example():
    cond = _hand_batch()
    q = torch.tensor([[-1.0, 0.0, 0.5, 2.0, 2.5, 3.0, 4.0]], dtype=torch.float64)
    nb = channel_neighbours(cond, q)
    x = [nb.prev_value[0, :, 0].tolist(), nb.prev_gap[0, :, 0].tolist(),
         nb.next_value[0, :, 0].tolist(), nb.next_gap[0, :, 0].tolist()]
    # strict: at t=0 and t=2, x's own observation is not its neighbour
    assert x[0] == [0.0, 0.0, 1.0, 1.0, 3.0, 3.0, 3.0]
    assert x[1] == [INF, INF, 0.5, 2.0, 0.5, 1.0, 2.0]
    assert x[2] == [1.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0]
    assert x[3] == [1.0, 2.0, 1.5, INF, INF, INF, INF]
    # linear interpolation between the neighbours, carried beyond them
    assert nb.interpolate()[0, :, 0].tolist() == [1.0, 3.0, 1.5, 1.0, 3.0, 3.0, 3.0]
    # y: its one observation (t=3) is before t=4, after t<3, and no neighbour of t=3 itself
    assert nb.prev_value[0, :, 1].tolist() == [0.0] * 6 + [5.0]
    assert nb.next_gap[0, :, 1].tolist() == [4.0, 3.0, 2.5, 1.0, 0.5, INF, INF]
    assert nb.interpolate()[0, :, 1].tolist() == [5.0] * 5 + [0.0, 5.0]
    # w: never observed
    assert not nb.has_prev[..., 2].any() and not nb.has_next[..., 2].any()
    assert nb.interpolate()[0, :, 2].tolist() == [0.0] * 7
    # not strict: an observation is its own neighbour (gap 0)
    loose = channel_neighbours(cond, q, strict=False)
    assert loose.prev_gap[0, :, 0].tolist() == [INF, 0.0, 0.5, 0.0, 0.5, 1.0, 2.0]
    assert loose.next_gap[0, :, 0].tolist() == [1.0, 0.0, 1.5, 0.0, INF, INF, INF]
    assert loose.interpolate()[0, :, 0].tolist() == [1.0, 1.0, 1.5, 3.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("strict", [True, False])
def test_neighbours_match_numpy_reference(strict):
    rng = np.random.default_rng(0)
    b, n, c, m = 6, 9, 3, 11
    times = np.sort(rng.uniform(0, 1, (b, n)), axis=1)
    lengths = np.array([9, 5, 1, 3, 9, 2])
    mask = (rng.uniform(size=(b, n, c)) < 0.5).astype(float)
    mask[2, 0] = [1.0, 0.0, 0.0]  # a series with one observation
    mask[4, :, 1] = 0.0  # a channel never observed
    values = rng.normal(size=(b, n, c)) * mask
    for i in range(b):  # padding repeats the last valid time and holds garbage that is ignored
        times[i, lengths[i]:] = times[i, lengths[i] - 1]
        mask[i, lengths[i]:] = 1.0
        values[i, lengths[i]:] = 99.0
    query = rng.uniform(-0.2, 1.2, (b, m))
    query[:, :3] = times[:, [0, 1, 4]]  # queries at observation times, first and padded ones
    cond = Batch(*(torch.as_tensor(a) for a in (times, values, mask)), torch.as_tensor(lengths))
    nb = channel_neighbours(cond, torch.as_tensor(query), strict=strict)
    ref = _reference(times, values, mask, lengths, query, strict)
    np.testing.assert_allclose(nb.prev_value.numpy(), ref["pv"])
    np.testing.assert_allclose(nb.prev_gap.numpy(), ref["pg"], atol=1e-12)
    np.testing.assert_allclose(nb.next_value.numpy(), ref["nv"])
    np.testing.assert_allclose(nb.next_gap.numpy(), ref["ng"], atol=1e-12)
    # where both neighbours exist the interpolation is numpy's on the two observations
    # (not strict: at an observed time both are that observation and so is the interpolation)
    both = (nb.has_prev & nb.has_next).numpy()
    at_obs = both & (ref["pg"] + ref["ng"] == 0)
    both &= ~at_obs
    assert both.sum() > 20 and (at_obs.sum() > 0) == (not strict)
    span = np.where(both, ref["pg"] + ref["ng"], 1.0)
    expect = ref["pv"] + np.where(both, ref["pg"], 0.0) / span * (ref["nv"] - ref["pv"])
    interp = nb.interpolate().numpy()
    np.testing.assert_allclose(interp[both], expect[both], rtol=1e-10)
    np.testing.assert_array_equal(interp[at_obs], ref["pv"][at_obs])


def _hand_query(seed=0):
    """:func:`_hand_batch`, four query times around its observations, and seeded random
    decoder means ``(2, 1, 4, 3)`` and latent states ``(2, 1, 4, 5)`` there."""
    torch.manual_seed(seed)
    cond = _hand_batch()
    q = torch.tensor([[0.5, 1.0, 2.0, 2.5]], dtype=torch.float64)
    base = torch.randn(2, 1, 4, 3, dtype=torch.float64)
    z = torch.randn(2, 1, 4, 5, dtype=torch.float64)
    return cond, q, base, z


def _readout_inputs(seed=0):
    cond, q, base, z = _hand_query(seed)
    readout = NeighbourReadout(5, 3).double()
    with torch.no_grad():  # a readout that uses every input
        readout.out.weight.normal_()
        readout.out.bias.normal_()
    return readout, base, z, cond, q


def test_readout_target_never_in_its_own_context():
    readout, base, z, cond, q = _readout_inputs()
    with torch.no_grad():
        out = readout(base, z, cond, q)
        moved = Batch(cond.times, cond.values.clone(), cond.mask, cond.lengths)
        moved.values[0, 2, 0] += 10.0  # x's value at t=2, a query time
        out2 = readout(base, z, moved, q)
    # the query at t=2 does not see its own value; its neighbours' queries (0.5, 1, 2.5) do
    assert torch.equal(out[:, 0, 2], out2[:, 0, 2])
    assert (out[:, 0, [0, 1, 3], 0] - out2[:, 0, [0, 1, 3], 0]).abs().min() > 1e-3


def test_readout_is_the_decoder_without_observations():
    readout, base, z, cond, q = _readout_inputs()
    with torch.no_grad():
        out = readout(base, z, cond, q)
    assert torch.equal(out[..., 2], base[..., 2])  # w: never observed
    assert not torch.allclose(out[..., 0], base[..., 0])
    # at initialisation (output layer 0, reach 1) the readout moves the decoder half-way to
    # the interpolation, times the envelope exp(-gap to the nearer neighbour)
    fresh = NeighbourReadout(5, 3).double()
    with torch.no_grad():
        init = fresh(base, z, cond, q)
    nb = channel_neighbours(cond, q)
    envelope = torch.exp(-torch.minimum(nb.prev_gap, nb.next_gap))
    expect = base + envelope * 0.5 * (nb.interpolate() - base)
    np.testing.assert_allclose(init[..., :2].numpy(), expect[..., :2].numpy(), rtol=1e-12)
    # q = [0.5, 1, 2, 2.5]: x's nearer neighbours are 0.5, 1, 2 and 0.5 away
    np.testing.assert_allclose(envelope[0, :, 0].numpy(), np.exp(-np.array([0.5, 1, 2, 0.5])))


def test_readout_gradients_are_finite_everywhere():
    readout, base, z, cond, q = _readout_inputs()
    base.requires_grad_(True)
    readout(base, z, cond, q).sum().backward()
    assert torch.isfinite(base.grad).all()
    for name, p in readout.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert readout.log_scale.grad.abs().sum() > 0  # the time scales are learned


def test_latent_ode_readout_option():
    model = LatentODE(2, latent_dim=4, rec_dim=8, units=8, n_layers=1, encoder="gru",
                      gradient="backprop", readout="neighbours")
    assert model.hparams["readout"] == "neighbours"
    assert isinstance(model.readout, NeighbourReadout)
    assert LatentODE(2, latent_dim=4, rec_dim=8).readout is None
    assert not any(k.startswith("readout.") for k in LatentODE(2).state_dict())
    with pytest.raises(ValueError, match="readout must be one of"):
        LatentODE(2, readout="nearest")


def test_sparse_entries_match_the_dense_grid():
    """Off CUDA the gate runs on the entries with a neighbour (and in ``where``) only; the
    dense path of CUDA gives the same values everywhere."""
    readout, base, z, cond, q = _readout_inputs()
    with torch.no_grad():
        out = readout(base, z, cond, q)
        nb = channel_neighbours(cond, q)
        channel = torch.arange(3).expand(nb.prev_gap.shape)
        dense = readout._correct(nb, channel, base, readout.latent(z).unsqueeze(-2))
        torch.testing.assert_close(out, dense, rtol=0, atol=1e-12)
        where = torch.zeros(1, 4, 3, dtype=torch.bool)
        where[0, 1, 0] = where[0, 3, 1] = True
        part = readout(base, z, cond, q, where)
    torch.testing.assert_close(part[:, where], out[:, where], rtol=0, atol=0)
    assert torch.equal(part[:, ~where], base[:, ~where])  # left uncorrected


def test_loss_scores_only_corrected_entries():
    """The training loss corrects the scored (observed) entries, so it equals the loss of a
    model whose readout corrects every entry."""
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=4, rec_dim=8, units=8, n_layers=1, encoder="gru",
                      gradient="backprop", readout="neighbours").double()
    with torch.no_grad():
        model.readout.out.weight.normal_()
    t = torch.linspace(0, 1, 6, dtype=torch.float64).expand(3, 6)
    batch = Batch(t, torch.randn(3, 6, 2, dtype=torch.float64),
                  (torch.rand(3, 6, 2) > 0.4).double(), torch.tensor([6, 5, 3]))
    g = torch.Generator().manual_seed(1)
    sparse = model.loss(batch, 2, generator=g).loss
    forward = model.readout.forward
    model.readout.forward = lambda *a, **k: forward(*a[:4])  # every entry
    g = torch.Generator().manual_seed(1)
    full = model.loss(batch, 2, generator=g).loss
    torch.testing.assert_close(sparse, full, rtol=1e-12, atol=0)


def _aux_case(likelihood="gaussian"):
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=4, rec_dim=8, units=8, n_layers=1, encoder="gru",
                      gradient="backprop", readout="neighbours", likelihood=likelihood).double()
    with torch.no_grad():
        model.readout.out.weight.normal_()
        model.noise.raw.fill_(-0.3)
        model.decoder_noise.raw.copy_(torch.tensor([0.4, -1.0]))
    t = torch.linspace(0, 1, 6, dtype=torch.float64).expand(3, 6)
    mask = (torch.rand(3, 6, 2) > 0.4).double()
    mask[:, 0] = 1.0
    batch = Batch(t, torch.randn(3, 6, 2, dtype=torch.float64) * mask, mask,
                  torch.tensor([6, 5, 3]))
    noise = torch.randn(2, 3, 4, dtype=torch.float64)
    return model, batch, noise


@pytest.mark.parametrize("weighting", ["value", "channel"])
def test_readout_aux_term_matches_a_hand_computation(weighting):
    """loss(lambda) - loss(0) = lambda * the Gaussian NLL of the decoder's own means under
    their own noise (decoder_noise), per observed value, averaged over trajectory samples,
    with the entries' weights."""
    model, batch, noise = _aux_case()
    lam = 0.7
    plain = model.loss(batch, 2, z0_noise=noise, weighting=weighting).loss
    with_aux = model.loss(batch, 2, z0_noise=noise, weighting=weighting, readout_aux=lam).loss
    # by hand: the decoder's means at the batch's times from the same z0 samples
    with torch.no_grad():
        mu, sigma = model.encode(batch, batch.times[:, 0])
        z, _ = model.solve(mu + sigma * noise, batch.times[:, 0], batch.times, batch.lengths)
        base = model.decoder(z).numpy()  # (K, B, M, C)
    x = batch.values.numpy()
    valid = (np.arange(6)[None, :] < batch.lengths.numpy()[:, None])[..., None]
    m = batch.mask.numpy() * valid
    if weighting == "channel":  # each observed channel of a series weighs its number of
        per = m.sum(1, keepdims=True)  # observed values in all, spread evenly over them
        w = np.where(per > 0, m * per.sum(2, keepdims=True) / per.clip(min=1)
                     / (per > 0).sum(2, keepdims=True).clip(min=1), 0.0)
    else:
        w = m
    std = np.log1p(np.exp([0.4, -1.0])) + 1e-3  # softplus(raw) + floor of decoder_noise
    assert not np.allclose(std, model.obs_std.detach().numpy())
    log_p = -0.5 * ((x - base) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)
    nll = -(log_p * w).sum(axis=(2, 3)).mean(0).sum() / m.sum()
    assert nll > 0
    np.testing.assert_allclose((with_aux - plain).item(), lam * nll, rtol=1e-8)


def test_readout_aux_gradients_reach_the_decoder_not_the_noise():
    """The auxiliary term trains the decoder, the trajectory and its own noise model; the
    readout's and the observation noise's gradients are those of the bound alone, and the
    bound does not train the decoder's noise model."""
    def grads(lam, likelihood):
        model, batch, noise = _aux_case(likelihood)
        model.zero_grad()
        model.loss(batch, 2, z0_noise=noise, readout_aux=lam).loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    for likelihood in ("gaussian", "student_t"):
        plain, aux = grads(0.0, likelihood), grads(1.0, likelihood)
        for name in plain:
            if name.startswith(("noise.", "readout.")):
                torch.testing.assert_close(aux[name], plain[name], rtol=1e-12, atol=0)
        changed = [n for n in plain if not torch.allclose(aux[n], plain[n], rtol=1e-6)]
        assert any(n.startswith("decoder.") for n in changed), changed
        assert any(n.startswith("dynamics.") for n in changed), changed
        assert any(n.startswith("encoder.") for n in changed), changed
        assert "noise.raw" in plain and (likelihood == "gaussian" or "noise.raw_df" in plain)
        own = ["decoder_noise.raw"] + (["decoder_noise.raw_df"] if likelihood != "gaussian"
                                       else [])
        assert not any(n in plain for n in own)  # untouched by the bound
        assert all(bool(aux[n].abs().min() > 0) for n in own)


def test_readout_aux_needs_a_readout_and_a_valid_weight():
    model, batch, noise = _aux_case()
    plain = LatentODE(2, latent_dim=4, rec_dim=8, units=8, n_layers=1, encoder="gru",
                      gradient="backprop").double()
    torch.testing.assert_close(plain.loss(batch, 2, z0_noise=noise, readout_aux=2.0).loss,
                               plain.loss(batch, 2, z0_noise=noise).loss, rtol=0, atol=0)
    for bad in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="readout_aux must be a non-negative finite"):
            model.loss(batch, 2, z0_noise=noise, readout_aux=bad)
    # the reported nll is that of the corrected means with or without the term
    a = model.loss(batch, 2, z0_noise=noise)
    b = model.loss(batch, 2, z0_noise=noise, readout_aux=1.0)
    torch.testing.assert_close(a.nll, b.nll, rtol=0, atol=0)
    torch.testing.assert_close(a.mse, b.mse, rtol=0, atol=0)


def test_set_reach_sets_the_envelope_and_checks_its_input():
    model = LatentODE(3, latent_dim=4, rec_dim=8, units=8, n_layers=1, readout="neighbours")
    model.set_readout_reach(torch.tensor([0.05, 0.2, 1.5]))
    torch.testing.assert_close(model.readout.log_reach.exp(), torch.tensor([0.05, 0.2, 1.5]))
    for bad in ([0.1, 0.0, 1.0], [0.1, math.inf, 1.0], [0.1, 0.2]):
        with pytest.raises(ValueError, match="reach must be"):
            model.set_readout_reach(torch.tensor(bad))
    LatentODE(3, latent_dim=4, rec_dim=8, units=8, n_layers=1).set_readout_reach(
        torch.tensor([0.0]))  # no readout: nothing to set


def test_split_sides_give_each_kind_of_query_its_own_parameters():
    """``sides="split", split="copy"``: queries between two observations of the channel go
    through the module's own parameters, those with a neighbour on one side only through
    ``one_sided``'s (its own gate, residual and reach), on the sparse and the dense path."""
    cond, q, base, z = _hand_query()
    readout = NeighbourReadout(5, 3, sides="split", split="copy").double()
    assert isinstance(readout.one_sided, NeighbourReadout) and readout.one_sided.one_sided is None
    assert NeighbourReadout(5, 3).one_sided is None
    with torch.no_grad():  # gate 0.5 and residual 0.25 / gate sigmoid(2) and -0.5, reach 0.5
        readout.out.bias.copy_(torch.tensor([0.0, 0.25]))
        readout.one_sided.out.bias.copy_(torch.tensor([2.0, -0.5]))
        readout.one_sided.log_reach.fill_(math.log(0.5))
        out = readout(base, z, cond, q)
        nb = channel_neighbours(cond, q)
        dense = readout.dense(nb, base, z)
    two = nb.has_prev & nb.has_next
    one = (nb.has_prev | nb.has_next) & ~two
    # x is between its observations at 0 and 2 for the queries 0.5 and 1; x at 2 (strict) and
    # 2.5, and y (observed at 3 only) everywhere, have one side; w has none
    assert two[0, :, 0].tolist() == [True, True, False, False] and int(two.sum()) == 2
    assert int(one.sum()) == 6
    interp = nb.interpolate()
    near = torch.minimum(nb.prev_gap, nb.next_gap)
    expect_two = base + torch.exp(-near) * (0.5 * (interp - base) + 0.25)
    expect_one = base + torch.exp(-near / 0.5) * (1 / (1 + math.exp(-2.0)) * (interp - base)
                                                  - 0.5)
    np.testing.assert_allclose(out[:, two].numpy(), expect_two[:, two].numpy(), rtol=1e-12)
    np.testing.assert_allclose(out[:, one].numpy(), expect_one[:, one].numpy(), rtol=1e-12)
    assert torch.equal(out[..., 2], base[..., 2])
    torch.testing.assert_close(dense, out, rtol=0, atol=1e-12)
    # each kind's loss reaches its own parameters only
    for entries, trained, idle in ((two, readout, readout.one_sided),
                                   (one, readout.one_sided, readout)):
        readout.zero_grad(set_to_none=True)
        readout(base, z, cond, q)[:, entries].sum().backward()
        assert trained.out.bias.grad.abs().sum() > 0 and trained.log_reach.grad.abs().sum() > 0
        own = [p for name, p in idle.named_parameters() if not name.startswith("one_sided.")]
        assert all(p.grad is None or not p.grad.any() for p in own)


@pytest.mark.parametrize("split", ["offset", "copy", "bounded"])
def test_split_sides_set_both_reaches_and_the_option_is_checked(split):
    model = LatentODE(3, latent_dim=4, rec_dim=8, units=8, n_layers=1, readout="neighbours",
                      readout_sides="split", readout_split=split)
    assert model.hparams["readout_sides"] == "split"
    assert model.hparams["readout_split"] == split
    model.set_readout_reach(torch.tensor([0.05, 0.2, 1.5]))
    for one_sided in (False, True):
        torch.testing.assert_close(
            model.readout.effective_parameters(one_sided)["log_reach"].exp(),
            torch.tensor([0.05, 0.2, 1.5]))
    # an offset stays 0: the one-sided reach is the two-sided one
    assert (model.readout.one_sided.log_reach == 0).all() == (split != "copy")
    assert LatentODE(3, readout="neighbours").hparams["readout_sides"] == "shared"
    assert not any(".one_sided." in k for k in LatentODE(3, readout="neighbours").state_dict())
    with pytest.raises(ValueError, match="readout_sides must be one of"):
        LatentODE(3, readout="neighbours", readout_sides="both")
    with pytest.raises(ValueError, match="sides must be one of"):
        NeighbourReadout(4, 3, sides="both")
    with pytest.raises(ValueError, match="readout_split must be one of"):
        LatentODE(3, readout="neighbours", readout_split="residual")
    with pytest.raises(ValueError, match="split must be one of"):
        NeighbourReadout(4, 3, sides="split", split="residual")


def test_offset_split_starts_at_the_shared_parameters_and_adds_the_offsets():
    """``sides="split"`` (``split="offset"``, the default): the one-sided parameters are the
    two-sided ones plus offsets that start at 0, so the initial readout is the shared one at
    every entry; a one-sided query's gate and residual add the offsets to the two-sided ones
    (hand-computed, sparse and dense path); the two-sided queries' loss reaches the two-sided
    parameters only, the one-sided queries' loss both them and the offsets, with the same
    gradient (the sum's)."""
    cond, q, base, z = _hand_query()
    readout = NeighbourReadout(5, 3, sides="split", split="offset").double()
    assert readout.split == "offset" and readout.one_sided.one_sided is None
    assert all(not p.any() for p in readout.one_sided.parameters())
    own, one = readout.effective_parameters(), readout.effective_parameters(one_sided=True)
    assert list(own) == list(one)
    assert set(own) == {"log_scale", "log_reach", "context.weight", "context.bias", "channel",
                        "base", "latent.weight", "out.weight", "out.bias"}
    assert all(torch.equal(own[k], one[k]) for k in own)
    shared = NeighbourReadout(5, 3).double()
    shared.load_state_dict({k: v for k, v in readout.state_dict().items()
                            if not k.startswith("one_sided.")})
    with torch.no_grad():
        torch.testing.assert_close(readout(base, z, cond, q), shared(base, z, cond, q),
                                   rtol=0, atol=0)
        # as if trained: two-sided gate 2 and residual -0.5, reach 0.5; one-sided offsets
        # +0.5 on the gate and +0.25 on the residual: gate sigmoid(2.5), residual -0.25
        readout.out.bias.copy_(torch.tensor([2.0, -0.5]))
        readout.log_reach.fill_(math.log(0.5))
        readout.one_sided.out.bias.copy_(torch.tensor([0.5, 0.25]))
        out = readout(base, z, cond, q)
        nb = channel_neighbours(cond, q)
        dense = readout.dense(nb, base, z)
    two = nb.has_prev & nb.has_next
    one_side = (nb.has_prev | nb.has_next) & ~two
    interp = nb.interpolate()
    envelope = torch.exp(-torch.minimum(nb.prev_gap, nb.next_gap) / 0.5)
    expect_two = base + envelope * (1 / (1 + math.exp(-2.0)) * (interp - base) - 0.5)
    expect_one = base + envelope * (1 / (1 + math.exp(-2.5)) * (interp - base) - 0.25)
    np.testing.assert_allclose(out[:, two].numpy(), expect_two[:, two].numpy(), rtol=1e-12)
    np.testing.assert_allclose(out[:, one_side].numpy(), expect_one[:, one_side].numpy(),
                               rtol=1e-12)
    torch.testing.assert_close(dense, out, rtol=0, atol=1e-12)
    offsets = dict(readout.one_sided.named_parameters())
    readout.zero_grad(set_to_none=True)
    readout(base, z, cond, q)[:, two].sum().backward()
    assert readout.out.bias.grad.abs().sum() > 0 and readout.log_reach.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in offsets.values())
    readout.zero_grad(set_to_none=True)
    readout(base, z, cond, q)[:, one_side].sum().backward()
    assert offsets["out.bias"].grad.abs().sum() > 0
    for name, p in readout.effective_parameters().items():
        if p.grad is not None or offsets[name].grad is not None:
            torch.testing.assert_close(p.grad, offsets[name].grad, rtol=0, atol=0)


def test_bounded_split_one_sided_weight_never_exceeds_the_two_sided_one():
    """``split="bounded"``: a one-sided query's prediction is
    ``base + w * (interp - base) + envelope_one * exp(-gap / spacing_d) * r_one`` with
    ``w = min(envelope_one * sigmoid(g_one), envelope_two * sigmoid(g_two))``: it holds on to
    the carried observation at most as much as a query between two observations at the same
    gap would, and its residual fades over the channel's spacing (``set_spacing``); the
    two-sided queries are the offset readout's (hand-computed, sparse and dense paths). At the
    start (offsets 0, output layer 0) it is the offset readout."""
    cond, q, base, z = _hand_query()
    readout = NeighbourReadout(5, 3, sides="split", split="bounded").double()
    assert readout.split == "bounded" and all(not p.any() for p in readout.one_sided.parameters())
    offset = NeighbourReadout(5, 3, sides="split", split="offset").double()
    assert "residual_reach" not in offset.state_dict()
    offset.load_state_dict({k: v for k, v in readout.state_dict().items()
                            if k != "residual_reach"})
    nb = channel_neighbours(cond, q)
    two = nb.has_prev & nb.has_next
    one_side = (nb.has_prev | nb.has_next) & ~two
    interp = nb.interpolate()
    near = torch.minimum(nb.prev_gap, nb.next_gap)
    with torch.no_grad():
        torch.testing.assert_close(readout(base, z, cond, q), offset(base, z, cond, q),
                                   rtol=0, atol=1e-15)
        # as if trained: two-sided gate 2, residual -0.5, reach 0.5; spacings 0.5, 0.25, 1
        readout.out.bias.copy_(torch.tensor([2.0, -0.5]))
        readout.log_reach.fill_(math.log(0.5))
    readout.set_spacing(torch.tensor([0.5, 0.25, 1.0]))
    np.testing.assert_array_equal(readout.residual_reach.numpy(), [0.5, 0.25, 1.0])
    fade = torch.exp(-near / torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64))
    w_two = torch.exp(-near / 0.5) * torch.sigmoid(torch.tensor(2.0, dtype=torch.float64))
    expect_two = base + torch.exp(-near / 0.5) * (1 / (1 + math.exp(-2.0)) * (interp - base)
                                                  - 0.5)
    # one-sided offsets: a longer reach (1.5) and a stronger gate (2.5) are held to the
    # two-sided weight; a shorter reach (0.1) and a weaker gate (-1) are the one-sided ones;
    # the residual offset 0.75 makes the one-sided residual 0.25
    for gate, reach, binds in ((0.5, 1.5, True), (-3.0, 0.1, False)):
        with torch.no_grad():
            readout.one_sided.out.bias.copy_(torch.tensor([gate, 0.75]))
            readout.one_sided.log_reach.fill_(math.log(reach / 0.5))
            out = readout(base, z, cond, q)
            dense = readout.dense(nb, base, z)
        envelope = torch.exp(-near / reach)
        w_one = envelope * torch.sigmoid(torch.tensor(2.0 + gate, dtype=torch.float64))
        weight = torch.minimum(w_one, w_two)
        assert bool((weight[one_side] == (w_two if binds else w_one)[one_side]).all())
        expect_one = base + weight * (interp - base) + envelope * fade * 0.25
        np.testing.assert_allclose(out[:, one_side].numpy(), expect_one[:, one_side].numpy(),
                                   rtol=1e-12)
        np.testing.assert_allclose(out[:, two].numpy(), expect_two[:, two].numpy(), rtol=1e-12)
        torch.testing.assert_close(dense, out, rtol=0, atol=1e-12)
        # the one-sided loss trains the gate's offset (and, through it, the two-sided gate by
        # the same gradient) where it sets the weight, only the two-sided gate where that
        # bounds it; the residual's offset and the two-sided residual alike
        readout.zero_grad(set_to_none=True)
        readout(base, z, cond, q)[:, one_side].sum().backward()
        offset_grad, own_grad = readout.one_sided.out.bias.grad, readout.out.bias.grad
        assert own_grad[0].abs() > 0 and offset_grad[1].abs() > 0
        assert offset_grad[1] == own_grad[1]
        assert (offset_grad[0] == 0) if binds else (offset_grad[0] == own_grad[0])
    # the spacing is checked, and means nothing to the other layouts
    for bad in ([0.5, 0.0, 1.0], [0.5, math.inf, 1.0], [0.5, 0.25]):
        with pytest.raises(ValueError, match="spacing must be"):
            readout.set_spacing(torch.tensor(bad))
    offset.set_spacing(torch.tensor([0.0]))
    NeighbourReadout(5, 3).set_spacing(torch.tensor([0.0]))
    model = LatentODE(3, latent_dim=4, rec_dim=8, units=8, n_layers=1, readout="neighbours",
                      readout_sides="split")
    model.set_readout_spacing(torch.tensor([0.05, 0.2, 1.5]))
    torch.testing.assert_close(model.readout.residual_reach, torch.tensor([0.05, 0.2, 1.5]))
    LatentODE(3, latent_dim=4, rec_dim=8, units=8, n_layers=1).set_readout_spacing(
        torch.tensor([0.0]))  # no readout: nothing to set


def _train_readout(readout, base, z, cond, q, entries, steps=30):
    """``steps`` of Adamax (weight decay on) on the summed squared error of ``entries`` against
    1; returns the last loss."""
    opt = torch.optim.Adamax(readout.parameters(), lr=0.05, weight_decay=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((readout(base, z, cond, q)[:, entries] - 1.0) ** 2).sum()
        loss.backward()
        opt.step()
    return loss.item()


def test_offset_split_trained_without_one_sided_queries_keeps_the_shared_parameters():
    """Trained on two-sided queries only, the offsets stay exactly 0 (Adamax and its weight
    decay leave a parameter without gradient at 0) and the one-sided parameters are the
    trained two-sided ones; trained on both kinds, the offsets move away from 0 and the
    one-sided readout fits its queries better than the two-sided parameters would."""
    cond, q, base, z = _hand_query()
    nb = channel_neighbours(cond, q)
    two = nb.has_prev & nb.has_next
    both = nb.has_prev | nb.has_next
    torch.manual_seed(1)
    start = NeighbourReadout(5, 3, sides="split", split="offset").double().state_dict()
    fits = {}
    for name, entries in (("two", two), ("both", both)):
        readout = NeighbourReadout(5, 3, sides="split", split="offset").double()
        readout.load_state_dict(start)
        with torch.no_grad():
            first = ((readout(base, z, cond, q)[:, entries] - 1.0) ** 2).sum().item()
        last = _train_readout(readout, base, z, cond, q, entries)
        assert last < 0.5 * first  # it learns
        fits[name] = readout
    trained = fits["two"]
    assert all(not p.any() for p in trained.one_sided.parameters())
    own = trained.effective_parameters()
    one = trained.effective_parameters(one_sided=True)
    assert not torch.equal(own["out.bias"], start["out.bias"])
    assert all(torch.equal(own[k], one[k]) for k in own)
    trained = fits["both"]
    assert trained.one_sided.out.bias.detach().abs().sum().item() > 1e-3
    one_side = both & ~two

    def one_sided_error(with_offsets):
        shared = NeighbourReadout(5, 3).double()
        w = trained.effective_parameters(one_sided=with_offsets)
        shared.load_state_dict({k: v.detach() for k, v in w.items()})
        with torch.no_grad():
            return ((shared(base, z, cond, q)[:, one_side] - 1.0) ** 2).sum().item()

    assert one_sided_error(True) < one_sided_error(False)
