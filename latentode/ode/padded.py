"""Padded time grids: which positions of a ``(B, N)`` batch are valid, each row's last time, and
the reversal of each row's valid prefix.

A padded batch stores ``B`` series of different lengths in ``(B, N)`` rows: positions at or past a
series' length are padding, whatever their times hold. The encoders, the readout, the forecast
split and the ODE-RNN schedule all need the same two things from such a grid (the valid
positions and each series' last valid time, with which the padding is overwritten so that padded
intervals have zero length); this module is their one home. It depends on torch alone.
"""

from __future__ import annotations

import torch

__all__ = ["last_time", "hold_last", "flip_valid"]


def last_time(times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's last valid time.

    Parameters
    ----------
    times : torch.Tensor
        ``(B, N)`` times, ascending over each row's valid prefix.
    lengths : torch.Tensor
        ``(B,)`` valid positions per row; a row of length 0 reads its first time.

    Returns
    -------
    torch.Tensor
        ``(B, 1)`` the time at position ``max(lengths - 1, 0)`` of each row.

    Examples
    --------
    >>> last_time(torch.tensor([[0.0, 1.0, 9.0], [2.0, 9.0, 9.0]]), torch.tensor([2, 0]))
    tensor([[1.],
            [2.]])
    """
    lengths = lengths.to(device=times.device, dtype=torch.long)
    return times.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1))


def hold_last(
    times: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The grid with its padding overwritten by each row's last valid time.

    Parameters
    ----------
    times : torch.Tensor
        ``(B, N)`` times, ascending over each row's valid prefix.
    lengths : torch.Tensor
        ``(B,)`` valid positions per row.

    Returns
    -------
    held : torch.Tensor
        ``(B, N)`` ``times`` on the valid positions, the row's last valid time after them (so
        every row is ascending over its whole width and padded intervals have zero length).
    valid : torch.Tensor
        ``(B, N)`` bool, the valid positions.
    last : torch.Tensor
        ``(B, 1)`` each row's last valid time (:func:`last_time`).

    Examples
    --------
    >>> held, valid, last = hold_last(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([2]))
    >>> held, valid
    (tensor([[0., 1., 1.]]), tensor([[ True,  True, False]]))
    """
    lengths = lengths.to(device=times.device, dtype=torch.long)
    valid = torch.arange(times.shape[1], device=times.device).unsqueeze(0) < lengths.unsqueeze(1)
    last = last_time(times, lengths)
    return torch.where(valid, times, last), valid, last


def flip_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's valid prefix in reverse order, its padding left in place.

    Position ``j < lengths[b]`` of row ``b`` receives position ``lengths[b] - 1 - j``; the
    positions at or past ``lengths[b]`` keep their entries. Applying it twice gives ``x`` back.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, N, ...)`` a padded batch (times, values, masks...).
    lengths : torch.Tensor
        ``(B,)`` valid positions per row (``0 <= lengths <= N``).

    Returns
    -------
    torch.Tensor
        ``(B, N, ...)`` the reordered batch (a gather: gradients flow to ``x``).

    Examples
    --------
    >>> flip_valid(torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 9.0]]), torch.tensor([3, 2]))
    tensor([[2., 1., 0.],
            [4., 3., 9.]])
    """
    n = x.shape[1]
    lengths = lengths.to(device=x.device, dtype=torch.long).unsqueeze(1)
    pos = torch.arange(n, device=x.device).unsqueeze(0)
    src = torch.where(pos < lengths, lengths - 1 - pos, pos)  # (B, N)
    src = src.reshape(*src.shape, *([1] * (x.ndim - 2))).expand_as(x)
    return x.gather(1, src)
