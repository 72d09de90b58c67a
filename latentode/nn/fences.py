"""Bounded influence of gross outliers on what the model conditions on.

:class:`InputFences` clamps the observed values of a conditioning :class:`~latentode.batch.Batch`
to per-channel fences before the encoder and the neighbour readout read them. The fences are
fitted numbers of the data layer (:func:`latentode.data.channel_fences`, in standardised units);
this module only holds and applies them. The likelihood never sees the clamp: the values a
model is scored against (its training targets, :meth:`LatentODE.score`) stay the real ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from latentode.batch import Batch

__all__ = ["InputFences"]


class InputFences(nn.Module):
    """Per-channel fences of the conditioning values: ``min(max(x, low_c), high_c)``.

    Applied to the *observed* entries of a conditioning batch only (unobserved ones keep their
    padding 0). A value inside its channel's fences is returned unchanged, bit for bit, so a
    model whose conditioning values all lie inside computes exactly what it computes without
    fences; a value beyond conditions the model as a value at the fence would, however far
    beyond it lies. Without fences (``-inf``, ``+inf``, the initial state, and that of files saved
    before they existed) nothing changes.

    Parameters
    ----------
    n_channels : int
        Number of channels ``C``.

    Attributes
    ----------
    low, high : torch.Tensor
        ``(C,)`` buffers, the fences in standardised units; ``-inf`` / ``+inf`` where a channel
        has none. Set by :meth:`set`.

    Examples
    --------
    >>> fences = InputFences(2)
    >>> fences.set(torch.tensor([-1.0, -math.inf]), torch.tensor([1.0, math.inf]))
    >>> batch = Batch(torch.zeros(1, 2), torch.tensor([[[5.0, 5.0], [0.5, 0.0]]]),
    ...               torch.tensor([[[1.0, 1.0], [1.0, 0.0]]]), torch.tensor([2]))
    >>> fences(batch).values.tolist()
    [[[1.0, 5.0], [0.5, 0.0]]]
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.register_buffer("low", torch.full((n_channels,), -math.inf))
        self.register_buffer("high", torch.full((n_channels,), math.inf))

    def set(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Set the fences ``(C,)`` (standardised units; infinite: no fence on that side).

        Raises
        ------
        ValueError
            For a shape other than ``(C,)``, NaN, or ``low > high``.
        """
        low = torch.as_tensor(low, dtype=self.low.dtype)
        high = torch.as_tensor(high, dtype=self.high.dtype)
        if low.shape != self.low.shape or high.shape != self.high.shape:
            raise ValueError(f"fences must have shape {tuple(self.low.shape)}, got "
                             f"{tuple(low.shape)} and {tuple(high.shape)}.")
        if bool(torch.isnan(low).any() | torch.isnan(high).any()) or bool((low > high).any()):
            raise ValueError("fences must be numbers (infinite for none) with low <= high.")
        self.low.copy_(low)
        self.high.copy_(high)

    @property
    def active(self) -> bool:
        """Whether any channel has a finite fence."""
        return bool(torch.isfinite(self.low).any() | torch.isfinite(self.high).any())

    def forward(self, cond: Batch) -> Batch:
        """``cond`` with its observed values clamped to the fences (the other fields as they
        are)."""
        low = self.low.to(cond.values.dtype)
        high = self.high.to(cond.values.dtype)
        values = torch.where(cond.mask > 0, torch.clamp(cond.values, low, high), cond.values)
        return Batch(cond.times, values, cond.mask, cond.lengths, **cond.per_series())
