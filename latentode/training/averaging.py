"""Exponential moving average of a model's weights over training steps (torch only).

Polyak-Ruppert averaging (Polyak & Juditsky, 1992) in its exponential form, as used for
small networks whose last iterates wander around a minimum (e.g. the "EMA" of Tarvainen &
Valpola, 2017; Izmailov et al., 2018, average stochastic weights for the same reason): the
averaged weights are a smoother, usually better generalising, estimate than the last step's.
:class:`WeightAverage` keeps the average of a list of parameters; the training loop
(:func:`~latentode.training.fit_model`, ``weight_averaging``) updates it after every optimiser
step and evaluates, snapshots and returns the averaged weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """Exponential moving average of parameters, with a horizon counted in epochs.

    After optimiser step ``t`` (1, 2, ...), ``avg <- d_t * avg + (1 - d_t) * w`` with
    ``d_t = min(decay, (t - 1) / t)``: the plain mean of the steps so far while that is the
    more recent (every step of the first epoch, as long as ``epochs >= 1``), then an
    exponential average of weight ``decay`` per step. ``decay = 1 - 1 / (epochs * S)`` with
    ``S`` the number of optimiser steps of the first epoch (:meth:`end_epoch`; 1 before),
    i.e. a mean age of about ``epochs`` epochs whatever the size of the data set and the
    batch.

    Parameters
    ----------
    params : sequence of torch.Tensor
        The parameters to average (the optimiser's); their current values start the average.
    epochs : float
        Horizon of the average in epochs (> 0).

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> avg = WeightAverage([w], epochs=1.0)
    >>> for value in (1.0, 2.0, 3.0):
    ...     with torch.no_grad():
    ...         _ = w.fill_(value)
    ...     avg.update()
    >>> avg.averaged[0]
    tensor([2.])
    """

    def __init__(self, params: Sequence[torch.Tensor], epochs: float) -> None:
        if not epochs > 0:
            raise ValueError(f"epochs must be > 0, got {epochs!r}.")
        self.params = list(params)
        self.epochs = float(epochs)
        self.averaged = [p.detach().clone() for p in self.params]
        self.steps = 0
        self.steps_per_epoch: int | None = None
        self.decay = 1.0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values into the average (after an optimiser step)."""
        self.steps += 1
        d = min(self.decay, (self.steps - 1) / self.steps)
        torch._foreach_lerp_(self.averaged, [p.detach() for p in self.params], 1.0 - d)

    def end_epoch(self) -> None:
        """Mark the end of an epoch; the first one sets ``decay`` from its number of steps."""
        if self.steps_per_epoch is None and self.steps > 0:
            self.steps_per_epoch = self.steps
            self.decay = 1.0 - 1.0 / max(self.epochs * self.steps_per_epoch, 1.0)

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped(self) -> Iterator[None]:
        """Within the block the parameters hold the averaged values; restored afterwards.

        Yields
        ------
        None
            The parameters' own values come back on leaving the block, also on an error.
        """
        live = [p.detach().clone() for p in self.params]
        torch._foreach_copy_([p.data for p in self.params], self.averaged)
        try:
            yield
        finally:
            torch._foreach_copy_([p.data for p in self.params], live)
