"""The fitted state of an estimator: one object for ``fit``, pickling and :mod:`latentode.io`.

:class:`FittedState` holds exactly what :meth:`LatentODERegressor.fit
<latentode.LatentODERegressor.fit>` learns: the network, the training history, the time encoder,
the channel scaler, the fitted column names and the device. It is the one place that knows

* the names of the estimator's fitted attributes (:meth:`FittedState.of` reads them,
  :meth:`FittedState.attach` sets them: ``fit`` commits through it, loading and unpickling
  restore through it);
* how the network is packed (hyper-parameters plus a CPU ``state_dict``) and rebuilt
  (:meth:`FittedState.pack` / :meth:`FittedState.unpack`, and the pickle layout of
  :meth:`FittedState.to_pickle` / :meth:`FittedState.from_pickle`);
* where a restored network goes (the stored device, the CPU when CUDA is unavailable).

It sits between the estimator and :mod:`latentode.io`, which both import it; neither imports
the other's internals, and :mod:`latentode.io` never imports the estimator (it receives and
returns :class:`FittedState` objects, and the estimator class is passed in). It is private: the
file format is documented in :mod:`latentode.io`, the fitted attributes on the estimator.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .data import ChannelScaler, StaticEncoder, TimeEncoder
from .nn import LatentODE
from .training import History
from .utils import torch_seeded

__all__ = ["FittedState", "FITTED_ATTRIBUTES", "CLASSIFIER_ATTRIBUTES", "stored_names",
           "restore_device"]

#: the estimator's fitted attributes, in the order ``fit`` sets them (a classifier also has
#: ``classes_``, :data:`CLASSIFIER_ATTRIBUTES`)
FITTED_ATTRIBUTES = ("model_", "history_", "time_encoder_", "scaler_", "time_col_", "id_col_",
                     "target_cols_", "feature_names_in_", "n_features_in_", "device_",
                     "static_cols_", "static_encoder_")
CLASSIFIER_ATTRIBUTES = ("classes_",)
# the JSON-able column attributes (the ``fitted`` object of a saved file)
_COLUMNS = ("time_col_", "id_col_", "target_cols_", "feature_names_in_", "n_features_in_",
            "device_")
_MODEL_TAG = "__latentode_model__"  # marks a packed network in a pickle


@dataclass
class FittedState:
    """Everything :meth:`~latentode.LatentODERegressor.fit` learns, as one object.

    Attributes
    ----------
    model : LatentODE
        The trained network (in eval mode, on ``device``).
    history : History
        Per-epoch losses and the stopping reason.
    time_encoder : TimeEncoder
        Maps the time column to model time.
    scaler : ChannelScaler
        Standardises the target channels.
    time_col, id_col : hashable
        The fitted time and id columns (``id_col`` None for a single series).
    target_cols : list
        The fitted target columns.
    feature_names_in : numpy.ndarray
        ``[id_col,] time_col, *target_cols, *static_cols`` as an object array.
    device : torch.device
        Where the network lives.
    static_cols : list
        The fitted static covariate columns (empty: none).
    static_encoder : StaticEncoder or None
        Encodes them (None without static columns).
    classes : numpy.ndarray or None
        The classes of a classifier (``classes_``), None for a regressor.
    """

    model: LatentODE
    history: History
    time_encoder: TimeEncoder
    scaler: ChannelScaler
    time_col: Hashable
    id_col: Hashable | None
    target_cols: list[Hashable]
    feature_names_in: np.ndarray
    device: torch.device
    static_cols: list[Hashable] = field(default_factory=list)
    static_encoder: StaticEncoder | None = None
    classes: np.ndarray | None = None

    @classmethod
    def from_fit(cls, model: LatentODE, history: History, time_encoder: TimeEncoder,
               scaler: ChannelScaler, time_col: Hashable, id_col: Hashable | None,
               target_cols: list[Hashable], device: torch.device,
               static_cols: list[Hashable] | None = None,
               static_encoder: StaticEncoder | None = None,
               classes: np.ndarray | None = None) -> FittedState:
        """The state of a fit that has just finished (``feature_names_in`` derived)."""
        static_cols = list(static_cols or [])
        names = (([id_col] if id_col is not None else []) + [time_col] + list(target_cols)
                 + static_cols)
        return cls(model, history, time_encoder, scaler, time_col, id_col, list(target_cols),
                   np.asarray(names, dtype=object), device, static_cols, static_encoder,
                   classes)

    @property
    def n_features_in(self) -> int:
        """The number of columns of ``feature_names_in``."""
        return len(self.feature_names_in)

    # -------------------------------------------------------------- the estimator's attributes
    def _attributes(self) -> dict[str, Any]:
        out = {
            "model_": self.model, "history_": self.history, "time_encoder_": self.time_encoder,
            "scaler_": self.scaler, "time_col_": self.time_col, "id_col_": self.id_col,
            "target_cols_": self.target_cols, "feature_names_in_": self.feature_names_in,
            "n_features_in_": self.n_features_in, "device_": self.device,
            "static_cols_": self.static_cols, "static_encoder_": self.static_encoder,
        }
        if self.classes is not None:
            out["classes_"] = self.classes
        return out

    @classmethod
    def of(cls, estimator: Any) -> FittedState:
        """The fitted state of ``estimator`` (which must be fitted)."""
        return cls._from_attributes(vars(estimator))

    @classmethod
    def _from_attributes(cls, attrs: dict[str, Any]) -> FittedState:
        # static columns and classes came later: older pickles have none
        return cls(attrs["model_"], attrs["history_"], attrs["time_encoder_"], attrs["scaler_"],
                   attrs["time_col_"], attrs["id_col_"], attrs["target_cols_"],
                   attrs["feature_names_in_"], attrs["device_"],
                   list(attrs.get("static_cols_") or []), attrs.get("static_encoder_"),
                   attrs.get("classes_"))

    def attach(self, estimator: Any) -> None:
        """Set the fitted attributes of ``estimator`` (``model_`` ... ``static_encoder_``, and a
        classifier's ``classes_``) at once."""
        for name, value in self._attributes().items():
            setattr(estimator, name, value)

    # -------------------------------------------------------------- plain data + tensors
    def pack(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The state as JSON-able data and the network's tensors (on the CPU).

        Returns
        -------
        plain : dict
            ``fitted`` (the column attributes and the device as a string; ``static_cols_`` and
            ``classes_`` only when there are some), ``model_hparams``, ``time_encoder``,
            ``scaler``, ``history`` and, with static columns, ``static_encoder``: dicts of
            plain JSON types.
        tensors : dict of str to torch.Tensor
            The network's ``state_dict`` copied to the CPU, a tensor registered under two
            names stored once, under its first name (see :func:`stored_names`).
        """
        plain = {
            "fitted": {
                "time_col_": self.time_col,
                "id_col_": self.id_col,
                "target_cols_": list(self.target_cols),
                "feature_names_in_": list(self.feature_names_in),
                "n_features_in_": int(self.n_features_in),
                "device_": str(self.device),
            },
            "model_hparams": dict(self.model.hparams),
            "time_encoder": self.time_encoder.to_dict(),
            "scaler": self.scaler.to_dict(),
            "history": self.history.to_dict(),
        }
        # written only when used, so that files of plain regressors keep their layout
        if self.static_cols:
            plain["fitted"]["static_cols_"] = list(self.static_cols)
            assert self.static_encoder is not None
            plain["static_encoder"] = self.static_encoder.to_dict()
        if self.classes is not None:
            plain["fitted"]["classes_"] = [c.item() if isinstance(c, np.generic) else c
                                           for c in self.classes]
        canonical = stored_names(self.model)
        tensors = {k: v.detach().to("cpu", copy=True).contiguous()
                   for k, v in self.model.state_dict().items() if canonical[k] == k}
        return plain, tensors

    @classmethod
    def unpack(cls, plain: dict[str, Any], tensors: dict[str, torch.Tensor],
               device: torch.device | None = None) -> FittedState:
        """Rebuild a state from :meth:`pack`'s output (checked by the caller).

        Parameters
        ----------
        plain, tensors
            As returned by :meth:`pack`; ``tensors`` may also hold the second names of shared
            tensors.
        device : torch.device, optional
            Where to put the network; default the stored device, the CPU where that is a CUDA
            device and CUDA is unavailable.
        """
        fitted = plain["fitted"]
        dev = restore_device(fitted["device_"]) if device is None else device
        static = plain.get("static_encoder")
        classes = fitted.get("classes_")
        return cls(
            _build_model(plain["model_hparams"], tensors, dev),
            History.from_dict(plain["history"]),
            TimeEncoder.from_dict(plain["time_encoder"]),
            ChannelScaler.from_dict(plain["scaler"]),
            fitted["time_col_"],
            fitted["id_col_"],
            list(fitted["target_cols_"]),
            np.asarray(fitted["feature_names_in_"], dtype=object),
            dev,
            list(fitted.get("static_cols_", [])),
            None if static is None else StaticEncoder.from_dict(static),
            None if classes is None else np.asarray(classes),
        )

    # -------------------------------------------------------------- pickling
    def to_pickle(self) -> dict[str, Any]:
        """The fitted attributes as the estimator pickles them.

        The layout predates this class and is kept so that older pickles load: every fitted
        attribute under its name, ``model_`` as ``{"__latentode_model__": 1, "hparams": ...,
        "state_dict": ...}`` (CPU tensors) and ``device_`` as a string.
        """
        out = self._attributes()
        out["model_"] = {
            _MODEL_TAG: 1,
            "hparams": dict(self.model.hparams),
            "state_dict": {k: v.detach().to("cpu") for k, v in self.model.state_dict().items()},
        }
        out["device_"] = str(self.device)
        return out

    @classmethod
    def from_pickle(cls, attrs: dict[str, Any], stacklevel: int = 2) -> FittedState:
        """Rebuild a state from :meth:`to_pickle`'s layout; warn if CUDA is gone.

        ``stacklevel`` as if this method called :func:`warnings.warn` itself (2: the warning
        names this method's caller).
        """
        dev = restore_device(attrs["device_"], warn="pickled", stacklevel=stacklevel + 1)
        packed = attrs["model_"]
        model = packed
        if isinstance(packed, dict) and packed.get(_MODEL_TAG):
            model = _build_model(packed["hparams"], packed["state_dict"], dev)
        return cls._from_attributes({**attrs, "model_": model, "device_": dev})


def restore_device(stored: str | torch.device, warn: str | None = None,
                   stacklevel: int = 2) -> torch.device:
    """The device a restored network goes to: ``stored``, or the CPU where that is a CUDA
    device and CUDA is unavailable (with a :class:`UserWarning` naming ``warn``, e.g.
    ``"pickled"``, when given; ``stacklevel`` as for :func:`warnings.warn` called here)."""
    device = torch.device(stored)
    if device.type == "cuda" and not torch.cuda.is_available():
        if warn is not None:
            warnings.warn(
                f"The estimator was {warn} on {device} but CUDA is not available; its network "
                "is loaded on the CPU.", UserWarning, stacklevel=stacklevel,
            )
        device = torch.device("cpu")
    return device


def stored_names(model: torch.nn.Module) -> dict[str, str]:
    """Map every ``state_dict`` name to the name it is stored under (its first name).

    A module registered under two names (``LatentODE.ode_func`` wraps ``dynamics``) appears
    twice in ``state_dict`` with the same tensors; safetensors refuses tensors that share
    memory, so a file stores each tensor once, and loading its first name fills both.
    """
    first: dict[int, str] = {}
    out = {}
    for name, value in model.state_dict(keep_vars=True).items():
        out[name] = first.setdefault(id(value), name)
    return out


def _build_model(hparams: dict[str, Any], tensors: dict[str, torch.Tensor],
                 device: torch.device) -> LatentODE:
    """The network of ``hparams`` holding ``tensors``, on ``device``, in eval mode."""
    with torch_seeded(0):  # construction draws initial weights: keep the global RNG intact
        model = LatentODE(**LatentODE.with_former_hparams(hparams))
    # second names of shared tensors are filled through their first
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    canonical = stored_names(model)
    lost = [k for k in missing if canonical[k] == k and k not in LatentODE.OPTIONAL_STATE]
    if unexpected or lost:
        raise RuntimeError(f"the stored weights do not fit the network: unexpected "
                           f"{unexpected}, missing {lost}")
    model.to(device)
    model.eval()
    return model
