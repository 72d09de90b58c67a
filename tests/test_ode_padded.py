"""latentode.ode.padded: the valid positions of a padded time grid, each row's last time and the
reversal of each row's valid prefix."""

from __future__ import annotations

import doctest

import torch

from latentode.ode import padded
from latentode.ode.padded import flip_valid, hold_last, last_time


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    # three rows of lengths 3, 1 and 0; the padding holds junk (9, -5) that must not be read
    times = torch.tensor([[0.0, 0.5, 2.0, 9.0], [1.5, -5.0, 9.0, 9.0], [3.0, 9.0, -5.0, 9.0]],
                         dtype=torch.float64)
    return times, torch.tensor([3, 1, 0], dtype=torch.int32)


def test_last_time_reads_each_rows_last_valid_position() -> None:
    times, lengths = _grid()
    last = last_time(times, lengths)
    assert last.shape == (3, 1) and last.dtype == torch.float64
    # length 0 reads the first time, never a padded one
    assert last.squeeze(1).tolist() == [2.0, 1.5, 3.0]


def test_hold_last_overwrites_the_padding_only() -> None:
    times, lengths = _grid()
    held, valid, last = hold_last(times, lengths)
    assert valid.tolist() == [[True, True, True, False], [True, False, False, False],
                              [False, False, False, False]]
    assert held.tolist() == [[0.0, 0.5, 2.0, 2.0], [1.5, 1.5, 1.5, 1.5], [3.0, 3.0, 3.0, 3.0]]
    torch.testing.assert_close(last, last_time(times, lengths))
    # rows ascend over the whole width, so padded intervals have zero length
    gaps = held.diff(dim=1)
    assert bool((gaps >= 0).all()) and bool((gaps[~valid[:, 1:]] == 0).all())
    assert times[0, 3] == 9.0  # the input is not modified


def test_flip_valid_reverses_each_valid_prefix_and_is_its_own_inverse() -> None:
    times, lengths = _grid()
    flipped = flip_valid(times, lengths)
    assert flipped.tolist() == [[2.0, 0.5, 0.0, 9.0], [1.5, -5.0, 9.0, 9.0],
                                [3.0, 9.0, -5.0, 9.0]]
    assert torch.equal(flip_valid(flipped, lengths), times)
    # trailing dimensions travel with their position
    values = torch.arange(24.0).reshape(3, 4, 2)
    out = flip_valid(values, lengths)
    assert torch.equal(out[0, :3], values[0, :3].flip(0)) and torch.equal(out[0, 3], values[0, 3])
    assert torch.equal(out[1:], values[1:])


def test_docstring_examples() -> None:
    result = doctest.testmod(padded)
    assert result.attempted > 0 and result.failed == 0
