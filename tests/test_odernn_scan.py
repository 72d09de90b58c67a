"""The fused ODE-RNN scan equals the reference recurrence (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from latentode.nn.encoder import GRUEncoder, ODERNNEncoder
from latentode.ode.odernn import GRUParams, event_schedule, odernn_scan


def _batch(seed: int = 0, b: int = 5, n: int = 9, c: int = 3):
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(b, n, generator=g, dtype=torch.float64), 1).values
    lengths = torch.tensor([n, 4, 1, 6, 2])[:b]
    values = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, n, c, generator=g) < 0.5).double()
    mask[3, 2] = 0.0  # a time with nothing observed: no jump there
    t0 = times[:, 0] - torch.rand(b, generator=g, dtype=torch.float64) * 0.4
    return times, values, mask, lengths, t0


def _run(enc, fused: bool, batch, t0):
    enc.fused = fused
    enc.zero_grad()
    times, values, mask, lengths, _ = batch
    mu, sigma = enc(times, values, mask, lengths, t0)
    w = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1), dtype=mu.dtype)
    ((mu * w).sum() + (sigma * w).sum()).backward()
    return mu.detach(), sigma.detach(), [p.grad.clone() for p in enc.parameters()]


@pytest.mark.parametrize("make", [
    lambda: ODERNNEncoder(3, 4, rec_dim=6, units=7, n_layers=2, gru_units=5, step_size=0.05),
    lambda: ODERNNEncoder(3, 4, rec_dim=6, units=7, n_layers=0, gru_units=5, step_size=0.3),
    lambda: GRUEncoder(3, 4, rec_dim=6, units=7, gru_units=5),
], ids=["odernn", "odernn-linear-flow", "gru"])
@pytest.mark.parametrize("with_t0", [True, False])
def test_fused_scan_matches_reference_loop(make, with_t0: bool) -> None:
    torch.manual_seed(0)
    enc = make().double()
    batch = _batch()
    t0 = batch[4] if with_t0 else None
    ref = _run(enc, False, batch, t0)
    got = _run(enc, True, batch, t0)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(float(g.abs().sum()) > 0 for g in got[2][:4])


def test_fused_scan_float32_close_to_reference() -> None:
    torch.manual_seed(0)
    enc = ODERNNEncoder(3, 4, rec_dim=6, units=7, n_layers=2, gru_units=5, step_size=0.05)
    batch = tuple(x.float() if x.is_floating_point() else x for x in _batch())
    ref = _run(enc, False, batch, batch[4])
    got = _run(enc, True, batch, batch[4])
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_scan_gradients_match_finite_differences() -> None:
    g = torch.Generator().manual_seed(3)
    hid, units, width, n_ev, b = 3, 4, 5, 6, 2

    def p(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    flow = [(p(width, hid), p(width)), (p(hid, width), p(hid))]
    gru = GRUParams(p(units, hid), p(2 * hid, units), p(2 * hid), p(units, hid), p(hid, units),
                    p(hid))
    xe = p(n_ev, b, 2 * units)
    dt = torch.rand(n_ev, b, generator=g, dtype=torch.float64) * -0.3
    jump = torch.rand(n_ev, b, generator=g) < 0.7
    index = torch.zeros(n_ev, b, dtype=torch.long)
    sched = type(event_schedule(torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=bool),
                                torch.zeros(1), None))(dt, jump, index)
    params = [xe, *[t for pair in flow for t in pair], *gru]

    def fn(*args):
        xe_, *rest = args
        fl = [(rest[0], rest[1]), (rest[2], rest[3])]
        return odernn_scan(xe_, sched, fl, GRUParams(*rest[4:]), cuda_graphs=False)

    assert torch.autograd.gradcheck(fn, tuple(params), eps=1e-6, atol=1e-7)


def test_event_schedule_substeps_and_jumps() -> None:
    # one series: times 0, 0.25, 1.0 (step 0.3): backwards 1.0 -> 1.0 (1 zero step) + jump at 2,
    # 1.0 -> 0.25 (3 steps of -0.25) + jump at 1, 0.25 -> 0 (1 step) + jump at 0, then 0 -> -0.5
    # (2 steps of -0.25); a second, shorter series is padded with no-op events
    times = torch.tensor([[0.0, 0.25, 1.0], [0.0, 0.1, 0.1]])
    lengths = torch.tensor([3, 2])
    jumps = torch.tensor([[True, True, True], [True, False, False]])
    t0 = torch.tensor([-0.5, 0.0])
    sched = event_schedule(times, lengths, jumps, t0, 0.3, multiple=4)
    assert sched.dt.shape == (8, 2)
    torch.testing.assert_close(sched.dt[:, 0], torch.tensor(
        [0.0, -0.25, -0.25, -0.25, -0.25, -0.25, -0.25, 0.0]))
    assert sched.jump[:, 0].tolist() == [True, False, False, True, True, False, False, False]
    assert sched.index[:, 0].tolist()[:5] == [2, 1, 1, 1, 0]
    # series 2: 0.1 -> 0.1 (position 1, not observed: no jump), 0.1 -> 0 (jump at 0), 0 -> 0
    torch.testing.assert_close(sched.dt[:3, 1], torch.tensor([0.0, -0.1, 0.0]))
    assert sched.jump[:, 1].tolist() == [False, True] + [False] * 6
    assert float(sched.dt[3:, 1].abs().sum()) == 0.0


def test_scan_states_are_each_events_state_and_carry_their_gradient() -> None:
    g = torch.Generator().manual_seed(5)
    hid, units, width, n_ev, b = 3, 4, 5, 6, 2

    def p(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    flow = [(p(width, hid), p(width)), (p(hid, width), p(hid))]
    gru = GRUParams(p(units, hid), p(2 * hid, units), p(2 * hid), p(units, hid), p(hid, units),
                    p(hid))
    xe = p(n_ev, b, 2 * units)
    dt = torch.rand(n_ev, b, generator=g, dtype=torch.float64) * -0.3
    jump = torch.rand(n_ev, b, generator=g) < 0.7
    sched = type(event_schedule(torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=bool),
                                torch.zeros(1), None))(dt, jump, torch.zeros(n_ev, b,
                                                                             dtype=torch.long))
    h, states = odernn_scan(xe, sched, flow, gru, cuda_graphs=False, return_states=True)
    assert states.shape == (n_ev, b, hid)
    torch.testing.assert_close(states[-1], h, rtol=0, atol=0)
    # each state is the final state of the scan cut after that event
    for j in (0, 2, 4):
        cut = type(sched)(dt[:j + 1], jump[:j + 1], sched.index[:j + 1])
        torch.testing.assert_close(states[j], odernn_scan(xe[:j + 1], cut, flow, gru,
                                                          cuda_graphs=False), rtol=0, atol=0)
    with torch.no_grad():  # the path that stores no activations gives the same states
        h2, states2 = odernn_scan(xe, sched, flow, gru, cuda_graphs=False, return_states=True)
    torch.testing.assert_close(states2, states, rtol=0, atol=0)
    params = [xe, *[t for pair in flow for t in pair], *gru]
    weights = torch.randn(n_ev, b, hid, generator=g, dtype=torch.float64)

    def fn(*args):
        xe_, *rest = args
        fl = [(rest[0], rest[1]), (rest[2], rest[3])]
        h_, s_ = odernn_scan(xe_, sched, fl, GRUParams(*rest[4:]), cuda_graphs=False,
                             return_states=True)
        return h_.sum() + (weights * s_).sum()

    assert torch.autograd.gradcheck(fn, tuple(params), eps=1e-6, atol=1e-7)
