"""Training callbacks: a minimal protocol called by :func:`~latentode.training.fit_model`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from torch import nn

__all__ = ["Callback", "CallbackProtocol", "LambdaCallback", "EarlyStopping", "as_callback",
           "check_callbacks"]


@runtime_checkable
class CallbackProtocol(Protocol):
    """Anything with ``on_epoch_end(epoch, record, model) -> bool | None``.

    ``on_train_begin(model)`` and ``on_train_end(history, model)`` are optional. Returning True
    from ``on_epoch_end`` stops training (``stopped_reason="callback"``); raising
    :class:`KeyboardInterrupt` is handled like Ctrl-C.
    """

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: nn.Module) -> bool | None:
        ...


class Callback:
    """Base class with no-op hooks; override what you need."""

    def on_train_begin(self, model: nn.Module) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: nn.Module) -> bool | None:
        """Called after each completed epoch with its history record; return True to stop."""
        return False

    def on_train_end(self, history: Any, model: nn.Module) -> None:
        """Called once after training (best weights already restored)."""


class LambdaCallback(Callback):
    """Wrap a function ``fn(epoch, record, model) -> bool | None`` as a callback."""

    def __init__(self, fn: Callable[[int, dict[str, Any], nn.Module], bool | None]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: nn.Module) -> bool | None:
        return self.fn(epoch, record, model)


class EarlyStopping(Callback):
    """Stop when a record entry has not improved for ``patience`` epochs.

    :func:`~latentode.training.fit_model` has early stopping on its monitored loss built in;
    use this callback to stop on another entry (e.g. ``"val_mse"``).

    Parameters
    ----------
    monitor : str
        Record key to watch.
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Minimum decrease that counts as an improvement.
    mode : {"min", "max"}
        Whether smaller or larger is better.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf
        self.wait = 0

    def on_train_begin(self, model: nn.Module) -> None:
        self.best = math.inf
        self.wait = 0

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: nn.Module) -> bool:
        value = record.get(self.monitor)
        if value is not None and math.isfinite(value) and \
                self.sign * value < self.best - self.min_delta:
            self.best = self.sign * value
            self.wait = 0
            return False
        self.wait += 1
        return self.wait >= self.patience


def as_callback(cb: Any) -> Any:
    """Return ``cb`` if it has ``on_epoch_end``, else wrap a callable in :class:`LambdaCallback`."""
    if hasattr(cb, "on_epoch_end"):
        return cb
    if callable(cb):
        return LambdaCallback(cb)
    raise TypeError(f"Not a callback: {cb!r} (needs on_epoch_end(epoch, record, model)).")


def check_callbacks(callbacks: Sequence[Any] | None, name: str = "callbacks") -> list[Any]:
    """The callbacks of an estimator's ``callbacks`` parameter, each ready for the training loop.

    Parameters
    ----------
    callbacks : list or tuple or None
        Objects with ``on_epoch_end(epoch, record, model)`` or plain callables of the same
        signature; None means none.
    name : str, default="callbacks"
        The parameter's name, for the error.

    Returns
    -------
    list
        The items, callables wrapped in :class:`LambdaCallback` (:func:`as_callback`).

    Raises
    ------
    ValueError
        If ``callbacks`` is not None, a list or a tuple (a single callback must be wrapped in a
        list), or if one of its items is neither a callback nor callable, or is a class rather
        than an instance (the error names it).

    Examples
    --------
    >>> [type(cb).__name__ for cb in check_callbacks([lambda epoch, record, model: None])]
    ['LambdaCallback']
    >>> check_callbacks(None)
    []
    """
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise ValueError(f"{name} must be None or a list of callbacks (objects with "
                         f"on_epoch_end(epoch, record, model), or callables), got {callbacks!r}.")
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type):
            raise ValueError(f"{name}[{i}] is the class {cb.__name__}; pass an instance of it, "
                             f"e.g. {cb.__name__}(...).")
        if not (hasattr(cb, "on_epoch_end") or callable(cb)):
            raise ValueError(f"{name}[{i}] must have on_epoch_end(epoch, record, model) or be a "
                             f"callable fn(epoch, record, model), got {cb!r}.")
    return [as_callback(cb) for cb in callbacks]
