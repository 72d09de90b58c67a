"""``posterior_time="last"``: the posterior over the latent state at each series' last
conditioning time (``LatentODE(posterior_time=...)``, the regressor's ``posterior_time``).

The encoder reads the series reversed in time (:func:`latentode.nn.model.time_reversed`), and
the solve runs forwards to later query times and backwards in time to earlier ones in one
batched solve; both are checked against the paper's forward model with the same weights.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY, as_saved_before, ragged_batch
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import Batch
from latentode.nn import LatentODE
from latentode.nn.model import POSTERIOR_TIMES, time_reversed
from latentode.ode import ODESolveError
from latentode.ode.padded import last_time

_TIGHT = dict(latent_dim=3, rec_dim=6, units=12, n_layers=1, gru_units=8, method="dopri5",
              rtol=1e-10, atol=1e-12, gradient="backprop")


def _pair(**kw) -> tuple[LatentODE, LatentODE]:
    """Two float64 networks with the same weights, the posterior at the first and last time."""
    kw = {**_TIGHT, **kw}
    torch.manual_seed(0)
    first = LatentODE(2, **kw).double()
    last = LatentODE(2, posterior_time="last", **kw).double()
    last.load_state_dict(first.state_dict())  # no parameter of its own
    return first, last


def _valid(lengths: torch.Tensor, m: int) -> torch.Tensor:
    return torch.arange(m)[None, :] < lengths[:, None]


def test_time_reversal_is_its_own_inverse_and_respects_the_lengths() -> None:
    batch = ragged_batch(n=6, length=9, min_length=1)
    t_n = last_time(batch.times, batch.lengths)[:, 0]
    rev = time_reversed(batch, t_n)
    assert torch.equal(rev.lengths, batch.lengths)
    for b, n in enumerate(batch.lengths.tolist()):
        # the valid prefix reversed, at s = t_N - t: it starts at 0 and ascends
        torch.testing.assert_close(rev.times[b, :n], t_n[b] - batch.times[b, :n].flip(0))
        assert rev.times[b, 0] == 0 and bool((rev.times[b, :n].diff() >= 0).all())
        assert torch.equal(rev.values[b, :n], batch.values[b, :n].flip(0))
        assert torch.equal(rev.mask[b, :n], batch.mask[b, :n].flip(0))
        # padding stays where it was
        assert torch.equal(rev.mask[b, n:], batch.mask[b, n:])
    back = time_reversed(rev, t_n)
    torch.testing.assert_close(back.times, batch.times, rtol=0, atol=1e-15)
    assert torch.equal(back.values, batch.values) and torch.equal(back.mask, batch.mask)


@pytest.mark.parametrize("where", ["last", "middle"])
def test_the_two_sided_solve_recovers_the_forward_trajectory(where: str) -> None:
    first, last = _pair()
    batch = ragged_batch(n=6, length=9, min_length=2)
    times, lengths = batch.times, batch.lengths
    m = times.shape[1]
    z_start = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(3),
                          dtype=torch.float64)
    with torch.no_grad():
        # reference: forwards from the first time to every time, then on to 0.5 later
        ahead = torch.cat([times, last_time(times, lengths) + 0.5], 1)
        ahead = torch.where(_valid(lengths + 1, m + 1), ahead, ahead.gather(1, lengths[:, None]))
        ref, _ = first.solve(z_start, times[:, 0], ahead, lengths + 1)
        idx = lengths - 1 if where == "last" else (lengths - 1) // 2
        rows = torch.arange(6)
        z_anchor, t_anchor = ref[:, rows, idx], times[rows, idx]
        # from the state there: backwards in time to the start and the earlier times,
        # forwards to the later ones and the horizon
        got, cum = last.solve(z_anchor, t_anchor, ahead, lengths + 1)
    assert cum is None and got.shape == ref.shape
    valid = _valid(lengths + 1, m + 1)
    torch.testing.assert_close(got[:, valid], ref[:, valid], rtol=1e-7, atol=1e-8)
    # the state at the start (the paper's z_t0) is recovered
    torch.testing.assert_close(got[:, :, 0], z_start, rtol=1e-7, atol=1e-8)
    # padded queries repeat the last valid one
    for b, n in enumerate((lengths + 1).tolist()):
        assert torch.equal(got[:, b, n:], got[:, b, n - 1:n].expand(-1, m + 1 - n, -1))


def test_only_one_side_to_solve_and_the_failing_series_is_named() -> None:
    first, last = _pair()
    times = torch.tensor([[0.0, 0.2, 0.5], [0.1, 0.3, 0.3], [0.0, 0.4, 0.9]], dtype=torch.float64)
    lengths = torch.tensor([3, 2, 3])
    z = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        ref, _ = first.solve(z, torch.full((3,), -0.5, dtype=torch.float64), times, lengths)
        # every query after the posterior's time: the forward rows alone, as the paper's solve
        ahead, _ = last.solve(z, torch.full((3,), -0.5, dtype=torch.float64), times, lengths)
        torch.testing.assert_close(ahead, ref, rtol=1e-12, atol=1e-12)
    # a series that needs too many steps backwards is named as solve names it (k * B + b)
    fixed = LatentODE(2, **{**_TIGHT, "method": "rk4"}, step_size=1e-2,
                      posterior_time="last").double()
    fixed.max_steps = 50
    far = times.clone()
    far[2, 0] = -5.0  # series 2 reaches back 5.4 model time: 540 steps, the others 50 at most
    with pytest.raises(ODESolveError) as info, torch.no_grad():
        fixed.solve(z, times[:, 1], far, lengths)
    assert info.value.series == 2 and info.value.reason == "max_steps"


def test_the_adjoint_gradient_of_the_two_sided_solve_is_the_backprop_one() -> None:
    batch = ragged_batch(n=5, length=7, min_length=2, seed=1)
    grads = {}
    for gradient in ("backprop", "adjoint"):
        _, last = _pair(gradient=gradient)
        z = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64,
                        requires_grad=True)
        t_anchor = batch.times[torch.arange(5), (batch.lengths - 1) // 2]
        out, _ = last.solve(z, t_anchor, batch.times + 0.2 * _valid(batch.lengths, 7),
                            batch.lengths)
        (out[:, _valid(batch.lengths, 7)] ** 2).sum().backward()
        grads[gradient] = [z.grad, *(p.grad for p in last.dynamics.parameters())]
    for a, b in zip(grads["backprop"], grads["adjoint"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("encoder", ["odernn", "gru", "mtan"])
def test_the_encoder_reads_the_series_reversed_and_ignores_the_padding(encoder: str) -> None:
    first, last = _pair(encoder=encoder)
    batch = ragged_batch(n=6, length=9, min_length=1, seed=2)
    t_n = last_time(batch.times, batch.lengths)[:, 0]
    with torch.no_grad():
        mu, sigma = last.encode(batch)
        # the backward encoder over the mirrored series, from its end back to s = 0 (t_N)
        ref_mu, ref_sigma = first.encode(time_reversed(batch, t_n), torch.zeros(6).double())
        torch.testing.assert_close(mu, ref_mu, rtol=0, atol=0)
        torch.testing.assert_close(sigma, ref_sigma, rtol=0, atol=0)
        for b, n in enumerate(batch.lengths.tolist()):
            one = Batch(batch.times[b:b + 1, :n], batch.values[b:b + 1, :n],
                        batch.mask[b:b + 1, :n], batch.lengths[b:b + 1])
            alone, _ = last.encode(one)
            torch.testing.assert_close(alone[0], mu[b], rtol=1e-10, atol=1e-12)
        # a posterior at the last time differs from the one at the first
        assert not torch.allclose(mu, first.encode(batch)[0])


def test_predicting_at_the_last_time_decodes_the_posterior_mean() -> None:
    _, last = _pair()
    batch = ragged_batch(n=6, length=9, min_length=1, seed=5)
    t_n = last_time(batch.times, batch.lengths)
    query = torch.cat([t_n, t_n + 0.3], 1)
    with torch.no_grad():
        out = last.predict(batch, query, torch.full((6,), 2))
        mu, _ = last.encode(batch)
        torch.testing.assert_close(out.mean[0, :, 0], last.decoder(mu), rtol=1e-12, atol=0)
        # the forecast 0.3 later: mu carried forwards by f alone
        ahead, _ = last.solve(mu[None], t_n[:, 0], t_n + 0.3, torch.ones(6, dtype=torch.long))
        torch.testing.assert_close(out.mean[0, :, 1], last.decoder(ahead[0, :, 0]))


def test_the_loss_trains_and_bad_combinations_are_refused() -> None:
    _, last = _pair(gradient="adjoint")
    batch = ragged_batch(n=6, length=9, min_length=2, seed=6)
    out = last.loss(batch, n_traj_samples=2, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and float(out.n_obs) == float(batch.mask.sum())
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0)
               for p in (*last.encoder.parameters(), *last.dynamics.parameters()))
    assert POSTERIOR_TIMES == ("first", "last")
    with pytest.raises(ValueError, match="posterior_time must be one of"):
        LatentODE(2, posterior_time="middle")
    for bad in (dict(poisson_process=True), dict(n_classes=2)):
        with pytest.raises(ValueError, match="posterior_time='last' cannot be combined"):
            LatentODE(2, posterior_time="last", **bad)


def test_estimator_fits_predicts_saves_and_loads_the_option(oscillators, tmp_path) -> None:
    base = {**TINY, "max_epochs": 3, "forecast_share": 0.5}
    est = LatentODERegressor(**base, posterior_time="last").fit(oscillators)
    assert est.model_.posterior_time == "last" and est.model_.hparams["posterior_time"] == "last"
    pred = est.predict(oscillators)[["x", "v"]].to_numpy()
    future = est.extrapolate(oscillators, times=[6.5, 7.0])
    assert np.isfinite(pred).all() and np.isfinite(future[["x", "v"]].to_numpy()).all()
    # the same fit with the posterior at the start predicts otherwise
    first = LatentODERegressor(**base).fit(oscillators)
    assert not np.allclose(pred, first.predict(oscillators)[["x", "v"]].to_numpy())
    est.save(tmp_path / "last.latentode")
    loaded = LatentODERegressor.load(tmp_path / "last.latentode")
    assert loaded.posterior_time == "last" and loaded.model_.posterior_time == "last"
    np.testing.assert_array_equal(loaded.predict(oscillators)[["x", "v"]].to_numpy(), pred)
    unpickled = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(unpickled.predict(oscillators)[["x", "v"]].to_numpy(), pred)
    assert clone(est).get_params()["posterior_time"] == "last"
    # files and pickles written before the parameter existed: the posterior at the start
    old, pickled = as_saved_before(first, "posterior_time", tmp_path, hparam=True)
    expect = first.predict(oscillators).to_numpy()
    for got in (old, pickled):
        assert got.posterior_time == "first" and got.model_.posterior_time == "first"
        np.testing.assert_array_equal(got.predict(oscillators).to_numpy(), expect)


def test_estimator_refuses_what_the_option_cannot_do(oscillators) -> None:
    with pytest.raises(ValueError, match="posterior_time must be one of"):
        LatentODERegressor(**TINY, posterior_time="end").fit(oscillators)
    est = LatentODERegressor(**TINY, posterior_time="last", poisson_process=True)
    with pytest.raises(ValueError, match="posterior_time='last' cannot be combined with "
                                         "poisson_process=True"):
        est.fit(oscillators)
    assert not hasattr(est, "model_")
    # the classifier reads the state at the series' start: "last" is refused in fit
    clf = LatentODEClassifier(**TINY, posterior_time="last")
    ids = pd.unique(oscillators["id"])
    labels = pd.Series(np.arange(len(ids)) % 2, index=ids)
    with pytest.raises(ValueError, match="LatentODEClassifier cannot use posterior_time='last'"):
        clf.fit(oscillators, labels)
    assert not hasattr(clf, "model_") and clf.get_params()["posterior_time"] == "last"
    assert LatentODERegressor().posterior_time == "first"
    assert LatentODEClassifier().posterior_time == "first"
