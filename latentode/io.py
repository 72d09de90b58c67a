"""Saving and loading fitted estimators without unpickling arbitrary objects.

A saved estimator is one zip archive holding two members:

``config.json``
    ``format_version``, the estimator's class and constructor parameters, the fitted column
    names, the network's hyper-parameters, the fitted time encoder and channel scaler, and the
    training history, all as plain JSON.
``weights.pt``
    The network's ``state_dict`` (CPU tensors), written by :func:`torch.save` and read back by
    :func:`torch.load` with ``weights_only=True``, so loading a file cannot execute code.

Use :meth:`LatentODERegressor.save <latentode.estimator.LatentODERegressor.save>` and
:meth:`LatentODERegressor.load <latentode.estimator.LatentODERegressor.load>`, which call the
functions below.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from .estimator import LatentODERegressor

__all__ = ["FORMAT_VERSION", "save_estimator", "load_estimator", "read_config"]

FORMAT_VERSION = 1
"""Version of the archive layout; bumped on any incompatible change."""

_CONFIG = "config.json"
_WEIGHTS = "weights.pt"


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars / arrays met in parameters to JSON types."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable.")


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if name == "random_state" and isinstance(value, np.random.RandomState):
            value = None  # a generator's state is not a parameter worth restoring
        elif callable(value):
            raise ValueError(
                f"Cannot save parameter {name}={value!r}: callables are not serialisable to "
                "JSON. Use a number or string for it, or pickle the estimator instead."
            )
        out[name] = value
    return out


def save_estimator(estimator: LatentODERegressor, path: str | os.PathLike[str]) -> None:
    """Write a fitted estimator to ``path`` (a single zip file; parent folders are created).

    Parameters
    ----------
    estimator : LatentODERegressor
        A fitted estimator.
    path : str or path-like
        Destination file; overwritten if it exists.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If a constructor parameter cannot be represented in JSON (e.g. a callable
        ``kl_warmup``).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    model = estimator.model_
    config = {
        "format_version": FORMAT_VERSION,
        "class": type(estimator).__name__,
        "latentode_version": _version(),
        "params": _params_to_json(estimator.get_params(deep=False)),
        "fitted": {
            "time_col_": estimator.time_col_,
            "id_col_": estimator.id_col_,
            "target_cols_": list(estimator.target_cols_),
            "feature_names_in_": list(estimator.feature_names_in_),
            "n_features_in_": int(estimator.n_features_in_),
            "device_": str(estimator.device_),
        },
        "model_hparams": dict(model.hparams),
        "time_encoder": estimator.time_encoder_.to_dict(),
        "scaler": estimator.scaler_.to_dict(),
        "history": estimator.history_.to_dict(),
    }
    text = json.dumps(config, default=_json_default, allow_nan=False, indent=1)
    buffer = io.BytesIO()
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    torch.save(state, buffer)

    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_CONFIG, text)
        archive.writestr(_WEIGHTS, buffer.getvalue())
    os.replace(tmp, path)  # never leave a half-written file under the final name


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the JSON configuration stored in a saved estimator (no weights are read).

    Raises
    ------
    ValueError
        If ``path`` is not a latentode archive or its ``format_version`` is unsupported.
    """
    try:
        with zipfile.ZipFile(os.fspath(path)) as archive:
            config = json.loads(archive.read(_CONFIG).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a saved latentode estimator.") from exc
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{os.fspath(path)!r} has format_version {version!r}; this version of latentode "
            f"reads format_version <= {FORMAT_VERSION}."
        )
    return config


def load_estimator(
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    cls: type[LatentODERegressor] | None = None,
) -> LatentODERegressor:
    """Load an estimator written by :func:`save_estimator`.

    Parameters
    ----------
    path : str or path-like
        The saved file.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, optional
        Where to put the network. Default: the device it was trained on when available, else
        the CPU (a GPU-trained model loads on a CPU-only machine).
    cls : type, optional
        Estimator class to instantiate (default :class:`~latentode.LatentODERegressor`).

    Returns
    -------
    LatentODERegressor
        A fitted estimator that predicts exactly like the saved one (on the same device).
    """
    from .data import ChannelScaler, TimeEncoder
    from .nn import LatentODE
    from .training import History
    from .utils import resolve_device, torch_seeded

    if cls is None:
        from .estimator import LatentODERegressor as cls
    config = read_config(path)
    with zipfile.ZipFile(os.fspath(path)) as archive:
        weights = archive.read(_WEIGHTS)
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)

    if device is None:
        stored = config["fitted"].get("device_", "cpu")
        dev = torch.device(stored)
        if dev.type == "cuda" and not torch.cuda.is_available():
            dev = torch.device("cpu")
    else:
        dev = resolve_device(device)

    est = cls(**config["params"])
    with torch_seeded(0):  # construction draws initial weights: keep the global RNG intact
        model = LatentODE(**config["model_hparams"])
    model.load_state_dict(state)
    model.to(dev)
    model.eval()
    fitted = config["fitted"]
    est.model_ = model
    est.time_encoder_ = TimeEncoder.from_dict(config["time_encoder"])
    est.scaler_ = ChannelScaler.from_dict(config["scaler"])
    est.history_ = History.from_dict(config["history"])
    est.time_col_ = fitted["time_col_"]
    est.id_col_ = fitted["id_col_"]
    est.target_cols_ = list(fitted["target_cols_"])
    est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    est.n_features_in_ = int(fitted["n_features_in_"])
    est.device_ = dev
    return est


def _version() -> str:
    from . import __version__

    return __version__
