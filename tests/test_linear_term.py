"""``linear_term``: the latent field ``f(z) = A z + MLP(z)`` with ``A`` learned from 0.

With the same seed, the model with the term starts as exactly the model without it: the term's
layer draws nothing from the global generator, so every module built after it (decoder,
readout, observation models) gets the same initial weights, and the field is the same (A = 0).
"""

from __future__ import annotations

import torch

from latentode.nn import LatentDynamics, LatentODE


def _model(linear_term: bool) -> LatentODE:
    torch.manual_seed(0)
    return LatentODE(3, latent_dim=5, rec_dim=6, units=8, n_layers=1, linear_term=linear_term)


def test_the_term_starts_at_zero_and_draws_nothing_from_the_generator() -> None:
    plain, linear = _model(False).state_dict(), _model(True).state_dict()
    assert set(linear) - set(plain) == {"dynamics.linear.weight", "ode_func.linear.weight"}
    assert set(plain) <= set(linear)
    for key, value in plain.items():
        torch.testing.assert_close(linear[key], value, rtol=0, atol=0, msg=key)
    assert torch.count_nonzero(linear["dynamics.linear.weight"]) == 0
    # the generator is where it would be without the term
    torch.manual_seed(0)
    LatentDynamics(4, n_layers=1, units=8)
    after_plain = torch.rand(3)
    torch.manual_seed(0)
    LatentDynamics(4, n_layers=1, units=8, linear=True)
    torch.testing.assert_close(torch.rand(3), after_plain, rtol=0, atol=0)


def test_the_term_adds_a_z_to_the_field() -> None:
    torch.manual_seed(0)
    f = LatentDynamics(4, n_layers=1, units=8, linear=True).double()
    z = torch.randn(7, 4, dtype=torch.float64)
    with torch.no_grad():
        base = f(None, z)
        f.linear.weight.copy_(torch.eye(4, dtype=torch.float64) * 2.0)
        torch.testing.assert_close(f(None, z), base + 2.0 * z)
    assert f.linear_term() is f.linear.weight
