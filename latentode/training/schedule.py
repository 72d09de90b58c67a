"""Learning-rate schedules over a fit's epochs (:func:`~latentode.training.fit_model`'s
``lr_schedule``).

A schedule gives the learning rate of every epoch from ``lr`` (the first epoch's), ``min_lr``
and ``max_epochs``; the training loop sets it on the optimiser at the start of each epoch (one
value per epoch, recorded as the history's ``"lr"``). Per epoch rather than per optimiser step:
the estimator counts training in epochs (``max_epochs``, ``kl_warmup``, ``lr_decay``), the
number of steps per epoch is the data's, and with tens of steps per epoch a per-step cosine
differs from it by at most one epoch's change of the rate.

``"cosine"``
    Cosine annealing (Loshchilov & Hutter's SGDR without restarts; PyTorch's
    ``CosineAnnealingLR`` with ``T_max = max_epochs - 1``): epoch ``e`` of ``E`` trains at
    ``min_lr + (lr - min_lr) * (1 + cos(pi * e / (E - 1))) / 2``, from ``lr`` at the first
    epoch to ``min_lr`` at the last.
``"linear"``
    A straight line from ``lr`` at the first epoch to ``min_lr`` at the last (PyTorch's
    ``LinearLR`` with ``total_iters = max_epochs - 1``).
callable
    ``f(epoch, max_epochs) -> factor`` (``epoch`` from 0): epoch ``e`` trains at
    ``max(lr * f(e, max_epochs), min_lr)`` (no floor when ``min_lr`` is None), e.g. a constant
    rate then a decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["LR_SCHEDULES", "LRSchedule", "MIN_LR_SHARE", "check_lr_schedule", "lr_at"]

#: the named schedules :func:`lr_at` knows (besides a callable)
LR_SCHEDULES = ("cosine", "linear")

#: a schedule: one of :data:`LR_SCHEDULES`, or ``f(epoch, max_epochs) -> factor of lr``
LRSchedule = str | Callable[[int, int], float]

#: ``min_lr=None`` with a named schedule: it ends at ``lr * MIN_LR_SHARE`` (a 100-fold anneal
#: whose last epoch still trains; 0 would spend the last epoch on no change at all)
MIN_LR_SHARE = 0.01


def check_lr_schedule(lr_schedule: LRSchedule | None, lr_decay: float | None, lr: float,
                      min_lr: float | None) -> None:
    """Raise a ValueError for a schedule that :func:`lr_at` cannot follow.

    Parameters
    ----------
    lr_schedule : {"cosine", "linear"}, callable or None
        The schedule (None: constant, or ``lr_decay``'s per-epoch factor).
    lr_decay : float or None
        The per-epoch decay factor; not with ``lr_schedule``.
    lr : float
        The first epoch's learning rate.
    min_lr : float or None
        The schedule's last (and lowest) learning rate; must lie in ``[0, lr]``.

    Raises
    ------
    ValueError
        Naming the parameter: an unknown schedule name, ``lr_schedule`` together with
        ``lr_decay``, or ``min_lr`` negative, not finite or above ``lr``.
    """
    if lr_schedule is not None and not callable(lr_schedule) and lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be None, one of {LR_SCHEDULES} or a callable "
                         f"(epoch, max_epochs) -> factor, got {lr_schedule!r}.")
    if lr_schedule is not None and lr_decay is not None:
        raise ValueError(f"lr_schedule={lr_schedule!r} and lr_decay={lr_decay!r} are two "
                         "learning-rate schedules; set lr_decay=None (or lr_schedule=None).")
    if min_lr is not None and not (math.isfinite(min_lr) and 0.0 <= min_lr <= lr):
        raise ValueError(f"min_lr must lie in [0, lr] = [0, {lr!r}], got {min_lr!r}.")


def lr_at(lr_schedule: LRSchedule, epoch: int, max_epochs: int, lr: float,
          min_lr: float | None = None) -> float:
    """The learning rate of epoch ``epoch`` (from 0) of ``max_epochs`` under ``lr_schedule``.

    Parameters
    ----------
    lr_schedule : {"cosine", "linear"} or callable
        See the module's description.
    epoch, max_epochs : int
        The epoch (0-based) and the fit's number of epochs.
    lr : float
        The first epoch's learning rate.
    min_lr : float, optional
        The last epoch's rate for a named schedule (None: ``lr * MIN_LR_SHARE``); the floor of
        a callable's (None: no floor).

    Returns
    -------
    float
        The learning rate; ``lr`` at epoch 0 (and for ``max_epochs <= 1``) for the named
        schedules, ``min_lr`` at epoch ``max_epochs - 1``.

    Raises
    ------
    ValueError
        If a callable's factor is not a finite number >= 0.
    """
    if callable(lr_schedule):
        factor = lr_schedule(epoch, max_epochs)
        try:
            ok = math.isfinite(factor) and factor >= 0.0
        except TypeError:
            ok = False
        if isinstance(factor, bool) or not ok:
            raise ValueError(f"lr_schedule({epoch}, {max_epochs}) must return a finite factor "
                             f">= 0 of lr, got {factor!r}.")
        return max(lr * float(factor), 0.0 if min_lr is None else float(min_lr))
    low = lr * MIN_LR_SHARE if min_lr is None else float(min_lr)
    if max_epochs <= 1 or epoch <= 0:  # exactly lr (the optimiser's own), not low + (lr - low)
        return lr
    progress = min(epoch, max_epochs - 1) / (max_epochs - 1)
    if lr_schedule == "cosine":
        return low + (lr - low) * (1.0 + math.cos(math.pi * progress)) / 2.0
    if lr_schedule == "linear":
        return lr + (low - lr) * progress
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES} or a callable, "
                     f"got {lr_schedule!r}.")
