"""``dynamics_activation``: the latent field's hidden non-linearity (tanh, ELU, softplus).

The option builds the stated network (ELU / softplus units, the same initial weights), its
field grows with the state where tanh's saturates, the adjoint keeps its hand-written VJP, and
the estimator fits, saves and loads it; files and pickles from before it existed load tanh.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _settings import TINY, as_saved_before
from torch import nn

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.nn import LatentDynamics, LatentODE
from latentode.nn.dynamics import DYNAMICS_ACTIVATIONS
from latentode.ode.adjoint import MLP_ACTIVATIONS, _mlp_layers


def _field(activation: str) -> LatentDynamics:
    torch.manual_seed(0)
    return LatentDynamics(4, n_layers=2, units=16, activation=activation).double()


@pytest.mark.parametrize("activation", ["elu", "softplus"])
def test_unbounded_fields_grow_with_the_state_where_tanh_saturates(activation: str) -> None:
    tanh, other = _field("tanh"), _field(activation)
    kinds = {type(m) for m in other.net if not isinstance(m, nn.Linear)}
    assert kinds == {DYNAMICS_ACTIVATIONS[activation]} and len(other.net) == 5
    # the same initial draw of weights: only the non-linearity differs
    for a, b in zip(tanh.parameters(), other.parameters()):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        for p in (*tanh.parameters(), *other.parameters()):
            p.mul_(10.0)  # trained-size weights, so that tanh units saturate
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # tanh: |f(100 z)| / |f(10 z)| stays near 1 (bounded field); ELU / softplus grow about
    # linearly with the scale of the state
    with torch.no_grad():
        ratio_tanh = (tanh(None, 100 * z).norm(dim=1) / tanh(None, 10 * z).norm(dim=1)).median()
        ratio = (other(None, 100 * z).norm(dim=1) / other(None, 10 * z).norm(dim=1)).median()
    assert float(ratio_tanh) < 1.5
    assert 5.0 < float(ratio) < 15.0
    assert not torch.allclose(tanh(None, z), other(None, z))


def test_the_field_declares_its_activation_to_the_adjoint() -> None:
    assert set(MLP_ACTIVATIONS) == set(DYNAMICS_ACTIVATIONS)
    for activation in DYNAMICS_ACTIVATIONS:
        f = _field(activation)
        layers, skip, act = _mlp_layers(f, list(f.parameters()))
        assert act == activation and skip is None and len(layers) == 3
    f = _field("tanh")
    assert all(a is b for pa, pb in zip(f.tanh_mlp_layers(), f.mlp_layers())
               for a, b in zip(pa, pb))
    with pytest.raises(ValueError, match="not 'tanh'"):
        _field("elu").tanh_mlp_layers()  # the ODE-RNN scan's fused loops are tanh only
    with pytest.raises(ValueError, match="activation must be one of"):
        LatentDynamics(3, activation="relu")
    # the encoder's own flow stays tanh whatever the latent field's activation
    model = LatentODE(2, latent_dim=3, rec_dim=4, units=8, n_layers=1,
                      dynamics_activation="elu")
    assert model.dynamics.mlp_activation() == "elu"
    assert model.encoder.rec_dynamics.mlp_activation() == "tanh"


def test_estimator_fits_saves_and_loads_an_elu_field(oscillators, tmp_path) -> None:
    base = {**TINY, "encoder": "odernn", "gradient": "adjoint"}
    est = LatentODERegressor(**base, dynamics_activation="elu").fit(oscillators)
    assert est.model_.hparams["dynamics_activation"] == "elu"
    assert any(isinstance(m, nn.ELU) for m in est.model_.dynamics.net)
    pred = est.predict(oscillators)[["x", "v"]].to_numpy()
    assert np.isfinite(pred).all()
    # the field trained: a tanh field fitted the same way predicts otherwise
    tanh = LatentODERegressor(**base).fit(oscillators)
    assert not np.allclose(pred, tanh.predict(oscillators)[["x", "v"]].to_numpy())
    est.save(tmp_path / "elu.latentode")
    loaded = LatentODERegressor.load(tmp_path / "elu.latentode")
    assert loaded.dynamics_activation == "elu"
    np.testing.assert_array_equal(loaded.predict(oscillators)[["x", "v"]].to_numpy(), pred)
    unpickled = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(unpickled.predict(oscillators)[["x", "v"]].to_numpy(), pred)
    # files and pickles written before the parameter existed hold a tanh field
    old, pickled = as_saved_before(tanh, "dynamics_activation", tmp_path, hparam=True)
    expect = tanh.predict(oscillators).to_numpy()
    for got in (old, pickled):
        assert got.dynamics_activation == "tanh"
        assert got.model_.dynamics.mlp_activation() == "tanh"
        np.testing.assert_array_equal(got.predict(oscillators).to_numpy(), expect)


def test_bad_activation_is_refused_before_training(oscillators) -> None:
    with pytest.raises(ValueError, match="dynamics_activation must be one of"):
        LatentODERegressor(**{**TINY, "dynamics_activation": "relu"}).fit(oscillators)
    clf = LatentODEClassifier(dynamics_activation="softplus")
    assert clf.get_params()["dynamics_activation"] == "softplus"
