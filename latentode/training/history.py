"""Per-epoch training history, JSON-serialisable."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["History", "STOP_REASONS", "MONITORS", "monitor_mode"]

#: the values of :attr:`History.stopped_reason`: why training ended
STOP_REASONS = ("max_epochs", "early_stopping", "callback", "interrupted")

#: the values of :attr:`History.monitor` (the record entry that chose the best epoch), each with
#: its direction: ``"min"`` (smaller is better) or ``"max"``
MONITORS = {"val_loss": "min", "train_loss": "min", "val_mse": "min", "val_log_loss": "min",
            "val_roc_auc": "max"}


def monitor_mode(monitor: str) -> str:
    """``"min"`` or ``"max"``: whether a smaller or a larger ``monitor`` value is better.

    Parameters
    ----------
    monitor : str
        One of :data:`MONITORS`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown monitor.
    """
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {tuple(MONITORS)}, got {monitor!r}.")
    return MONITORS[monitor]


def _json_safe(x: Any) -> Any:
    """Replace non-finite floats by None (strict JSON has no NaN / Infinity)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


@dataclass
class History:
    """What :func:`~latentode.training.fit_model` did, one record per completed epoch.

    Attributes
    ----------
    records : list of dict
        Per-epoch records with keys ``epoch`` (0-based), ``train_loss``, ``val_loss`` (None
        without validation), ``kl_weight``, ``lr``, ``seconds``, ``n_skipped`` (batches skipped
        for a non-finite loss or a solver failure) and the diagnostics ``train_nll``,
        ``train_kl``, ``train_mse`` (the squared error of the training step's sampled
        trajectories, averaged over samples), ``val_nll`` and ``val_mse`` (the mean squared
        error of the point predictions on the validation series, deterministic, see
        :func:`~latentode.training.evaluate_loss`); with a classifier scored on validation data,
        also ``val_log_loss`` and ``val_roc_auc`` (see
        :func:`~latentode.training.metrics.evaluate_classifier`).
    best_epoch : int or None
        Epoch whose weights were restored at the end.
    best_val_loss : float or None
        Validation loss of ``best_epoch`` (None without validation).
    best_loss : float or None
        Monitored value of ``best_epoch``: the record entry ``monitor`` names (the validation
        loss or MSE, the training loss, or the classifier's validation log-loss or AUC-ROC).
    monitor : {"val_loss", "train_loss", "val_mse", "val_log_loss", "val_roc_auc"}
        Which record entry selected the best epoch (:data:`MONITORS`; ``"val_roc_auc"`` is
        the one where larger is better).
    stopped_reason : {"max_epochs", "early_stopping", "callback", "interrupted"} or None
        Why training ended.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    best_loss: float | None = None
    monitor: str = "val_loss"
    stopped_reason: str | None = None

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch record."""
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[Any]:
        """Column of the records, e.g. ``history["val_loss"]``."""
        return [r.get(key) for r in self.records]

    @property
    def n_epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.records)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (non-finite floats become None)."""
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(
            records=[dict(r) for r in data.get("records", [])],
            best_epoch=data.get("best_epoch"),
            best_val_loss=data.get("best_val_loss"),
            best_loss=data.get("best_loss"),
            monitor=data.get("monitor", "val_loss"),
            stopped_reason=data.get("stopped_reason"),
        )

    def to_json(self, **kwargs: Any) -> str:
        """Serialise to a strict JSON string (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> History:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
