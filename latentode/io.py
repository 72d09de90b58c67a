"""Saving and loading fitted estimators; loading never executes code and checks everything.

A saved estimator is one zip archive (``format_version`` 2) holding two members:

``config.json``
    ``format_version``, the estimator's class and constructor parameters, the fitted column
    names, the network's hyper-parameters, the fitted time encoder and channel scaler, and the
    training history, all as plain JSON.
``weights.safetensors``
    The network's ``state_dict`` (CPU tensors; a module registered under two names is stored
    once) in the `safetensors <https://github.com/huggingface/safetensors>`_ format: a JSON
    header followed by raw tensor bytes. Reading it parses numbers only, so loading a file
    cannot execute code, whatever the torch version.

:func:`load_estimator` trusts nothing it reads. The constructor parameters go through the same
checks as :meth:`~latentode.LatentODERegressor.fit`; the fitted columns, network
hyper-parameters, time encoder, scaler, history and devices are checked for presence, type and
range; the weights must have exactly the names, shapes and dtypes of the network the
hyper-parameters describe, with finite values. Any malformed, truncated or tampered file
raises ``ValueError("not a valid latentode file: ...")`` naming what is wrong (a path that
cannot be opened raises the usual :class:`OSError`).

Files of ``format_version`` 1 (weights pickled by :func:`torch.save` as ``weights.pt``) are
read only with torch >= 2.6, whose ``torch.load(weights_only=True)`` is safe against code
execution (CVE-2025-32434 affected earlier versions); on older torch they are refused. Save
them again to convert them.

:func:`save_estimator` writes the archive to a temporary file in the destination folder and
renames it into place, so a failed save leaves neither a partial file nor a stray temporary
one. It refuses to write a file that :func:`load_estimator` would refuse.

Use :meth:`LatentODERegressor.save <latentode.estimator.LatentODERegressor.save>` and
:meth:`LatentODERegressor.load <latentode.estimator.LatentODERegressor.load>`, which call
:func:`save_state` and :func:`load_state` with the estimator's fitted state (a
``latentode._state.FittedState``, the object pickling uses too) and the estimator's class. This
module never imports the estimator: the class is always passed in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import inspect
import json
import math
import numbers
import os
import secrets
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._state import FittedState, stored_names

__all__ = ["FORMAT_VERSION", "save_state", "load_state", "save_estimator", "load_estimator",
           "read_config"]

FORMAT_VERSION = 2
"""Version of the archive layout; bumped on any incompatible change."""

_CONFIG = "config.json"
_WEIGHTS = {1: "weights.pt", 2: "weights.safetensors"}
_PREFIX = "not a valid latentode file: "
_DICT_ITEMS = "__items__"  # a dict parameter in config.json: {"__items__": [[key, value], ...]}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same model, the same bytes
_TOP_KEYS = ("format_version", "class", "latentode_version", "params", "fitted",
             "model_hparams", "time_encoder", "scaler", "history")
_FITTED_KEYS = ("time_col_", "id_col_", "target_cols_", "feature_names_in_", "n_features_in_",
                "device_")
_STATE_KEYS = ("fitted", "model_hparams", "time_encoder", "scaler", "history")
# written only by models that use them (static covariates, classifiers): absent in older files
_OPTIONAL_TOP_KEYS = ("static_encoder",)
_OPTIONAL_FITTED_KEYS = ("static_cols_", "classes_")
# errors that zipfile / zlib raise on damaged archives (OSError: e.g. a seek to a negative
# offset read from a tampered directory; the file itself was opened before)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               NotImplementedError, RuntimeError, ValueError, OverflowError, struct.error,
               KeyError, IndexError)


class _Invalid(Exception):
    """Internal: what is wrong with a file (turned into the public ValueError)."""


# ---------------------------------------------------------------------------------------- save
def save_estimator(estimator: BaseEstimator, path: str | os.PathLike[str]) -> None:
    """Write a fitted estimator to ``path`` (a single zip file; parent folders are created).

    The estimator's fitted state, constructor parameters and class go to :func:`save_state`.

    Parameters
    ----------
    estimator : LatentODERegressor
        A fitted estimator.
    path : str or path-like
        Destination file (e.g. ``"model.latentode"``); overwritten if it exists.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError, IsADirectoryError, OSError
        As :func:`save_state`.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    save_state(path, FittedState.of(estimator), estimator.get_params(deep=False),
               type(estimator))


def save_state(path: str | os.PathLike[str], state: FittedState, params: dict[str, Any],
               cls: type[BaseEstimator]) -> None:
    """Write a fitted state with its estimator's parameters and class to ``path``.

    The archive is written to a temporary file beside ``path`` and renamed into place: an
    existing file is replaced whole or not at all, and a failed save leaves nothing behind.

    Parameters
    ----------
    path : str or path-like
        Destination file (e.g. ``"model.latentode"``); overwritten if it exists.
    state : FittedState
        The estimator's fitted state.
    params : dict
        The estimator's constructor parameters (``get_params(deep=False)``).
    cls : type
        The estimator's class: its name is stored, and the parameters are checked with it as
        :func:`load_state` will check them.

    Raises
    ------
    ValueError
        If the estimator could not be loaded back from the file: a constructor parameter that
        JSON cannot represent (e.g. a callable ``kl_warmup``) or that ``fit`` would refuse
        (set after fitting), or a column label that is not a string or a number.
    IsADirectoryError
        If ``path`` is an existing folder.
    OSError
        If the file cannot be written.
    """
    plain, tensors = state.pack()
    config = {
        "format_version": FORMAT_VERSION,
        "class": cls.__name__,
        "latentode_version": _version(),
        "params": _params_to_json(params),
        **{key: plain[key] for key in (*_STATE_KEYS, *_OPTIONAL_TOP_KEYS) if key in plain},
    }
    try:
        text = json.dumps(config, default=_json_default, allow_nan=False, indent=1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Cannot save the estimator: {exc}") from exc
    try:  # never write what load would refuse
        _check_config(_parse_json(text.encode("utf-8")), cls)
    except _Invalid as exc:
        raise ValueError(f"Cannot save the estimator, it would not load back: {exc}") from None
    from safetensors.torch import save as st_save

    weights = st_save(tensors, metadata={"format": "pt"})
    _write_atomic(os.fspath(path), {_CONFIG: text.encode("utf-8"), _WEIGHTS[2]: weights})


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars / arrays and torch devices met in parameters to JSON types."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.device):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable.")


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if name == "random_state" and isinstance(value, np.random.RandomState):
            value = None  # a generator's state is not a parameter worth restoring
        elif name == "callbacks":  # training-time hooks (code), not part of the model
            if value:
                from .data.validation import external_stacklevel

                warnings.warn("The estimator's callbacks are not saved; the loaded estimator has "
                              "callbacks=None (pickle the estimator to keep them).", UserWarning,
                              stacklevel=external_stacklevel())
            value = None
        elif callable(value):
            raise ValueError(
                f"Cannot save parameter {name}={value!r}: callables are not serialisable to "
                "JSON. Use a number or string for it, or pickle the estimator instead."
            )
        elif isinstance(value, dict):  # e.g. class_weight: JSON keys would become strings
            value = {_DICT_ITEMS: [[k, v] for k, v in value.items()]}
        out[name] = value
    return out


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`_params_to_json`'s encoding of dict parameters (keys keep their type); JSON
    arrays become tuples."""
    out = {}
    for name, value in params.items():
        if isinstance(value, dict):
            items = value.get(_DICT_ITEMS)
            ok = set(value) == {_DICT_ITEMS} and isinstance(items, list) and all(
                isinstance(p, list) and len(p) == 2 and _is_json_scalar(p[0])
                and p[0] is not None for p in items)
            if not ok:
                raise _Invalid(f"params: {name} must be encoded as {{{_DICT_ITEMS!r}: [[key, "
                               f"value], ...]}}, got {_show(value)}")
            value = {k: v for k, v in items}
            if len(value) != len(items):
                raise _Invalid(f"params: {name} has duplicate keys")
        elif isinstance(value, list):  # JSON has no tuples: e.g. forecast_range
            value = tuple(value)
        out[name] = value
    return out


def _write_atomic(path: str, members: dict[str, bytes]) -> None:
    """Write a zip of ``members`` to ``path`` through a temporary file and a rename."""
    if os.path.isdir(path):
        raise IsADirectoryError(
            errno.EISDIR, "Is a directory; save writes one file, give a file name such as "
            "'model.latentode'", path)
    parent, base = os.path.split(path)
    if not base:
        raise IsADirectoryError(errno.EISDIR, "Names a directory; give a file name such as "
                                "'model.latentode'", path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    while True:
        tmp = os.path.join(parent, f".{base}.{secrets.token_hex(6)}.tmp")
        try:  # mode 0o666 and the umask, as for an ordinary new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        break
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as archive:
                for name, data in members.items():
                    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------------------------------- load
def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the JSON configuration stored in a saved estimator (no weights are read).

    Only the archive, the JSON and its top-level layout are checked here; :func:`load_estimator`
    checks every field.

    Raises
    ------
    ValueError
        ``"not a valid latentode file: ..."`` if ``path`` is not a latentode archive, is
        damaged, or has an unsupported ``format_version``.
    OSError
        If ``path`` cannot be opened.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        try:
            config, _ = _read_archive(fh, weights=False)
        except _Invalid as exc:
            raise ValueError(f"{_PREFIX}{exc} ({path!r})") from None
    return config


def load_estimator(
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    cls: type[BaseEstimator] | None = None,
) -> BaseEstimator:
    """Load an estimator written by :func:`save_estimator`, checking everything it reads.

    Parameters
    ----------
    path : str or path-like
        The saved file.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, optional
        Where to put the network. Default: the device it was trained on when available, else
        the CPU (a GPU-trained model loads on a CPU-only machine).
    cls : type
        Estimator class to instantiate, e.g. :class:`~latentode.LatentODERegressor` (required:
        this module does not import the estimator; :meth:`LatentODERegressor.load
        <latentode.LatentODERegressor.load>` passes its own class).

    Returns
    -------
    LatentODERegressor
        A fitted estimator that predicts exactly like the saved one (on the same device).

    Raises
    ------
    TypeError
        If ``cls`` is not given.
    ValueError, OSError
        As :func:`load_state`.
    """
    if cls is None:
        raise TypeError("load_estimator needs the estimator class: call "
                        "LatentODERegressor.load(path) or pass cls=LatentODERegressor.")
    est, state = load_state(path, cls, device=device)
    state.attach(est)
    return est


def load_state(
    path: str | os.PathLike[str],
    cls: type[BaseEstimator],
    device: str | torch.device | None = None,
) -> tuple[BaseEstimator, FittedState]:
    """Read a file written by :func:`save_state`, checking everything it reads.

    Parameters
    ----------
    path : str or path-like
        The saved file.
    cls : type
        The estimator class the stored parameters are checked against and given to.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, optional
        Where to put the network. Default: the device it was trained on when available, else
        the CPU (a GPU-trained model loads on a CPU-only machine).

    Returns
    -------
    estimator : cls
        An unfitted ``cls`` with the stored constructor parameters.
    state : FittedState
        The fitted state, ready for ``state.attach(estimator)``; the estimator then predicts
        exactly like the saved one (on the same device).

    Raises
    ------
    ValueError
        ``"not a valid latentode file: ..."`` naming what is wrong, for any malformed,
        truncated or tampered file: not a zip archive, a damaged or missing member, invalid
        JSON, a parameter ``fit`` would refuse, a missing or ill-typed field, weights whose
        names, shapes, dtypes or values do not fit the network. Also (without that prefix) for
        an invalid ``device`` argument.
    OSError
        If ``path`` cannot be opened.
    """
    from .utils import resolve_device

    dev = None if device is None else resolve_device(device)  # the caller's error, not the file's
    path = os.fspath(path)
    with open(path, "rb") as fh:
        try:
            config, tensors = _read_archive(fh, weights=True)
            est = _check_config(config, cls)
            tensors = _check_weights(tensors, config["model_hparams"],
                                     aliases=config["format_version"] == 1)
            try:
                state = FittedState.unpack(
                    {key: config[key] for key in (*_STATE_KEYS, *_OPTIONAL_TOP_KEYS)
                     if key in config}, tensors, device=dev)
            except RuntimeError as exc:  # pragma: no cover - _check_weights matched them
                raise _Invalid(f"weights: {exc}") from None
        except _Invalid as exc:
            raise ValueError(f"{_PREFIX}{exc} ({path!r})") from None
    return est, state


def _read_archive(fh: IO[bytes], weights: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The checked top level of ``config.json`` and (if ``weights``) the raw ``state_dict``."""
    try:
        archive = zipfile.ZipFile(fh)
    except _ZIP_ERRORS as exc:
        raise _Invalid(f"not a zip archive ({_describe(exc)})") from None
    with archive:
        try:
            names = archive.namelist()
        except _ZIP_ERRORS as exc:  # pragma: no cover - the directory was read on opening
            raise _Invalid(f"damaged zip directory ({_describe(exc)})") from None
        if len(set(names)) != len(names):
            raise _Invalid(f"duplicate members in the archive: {sorted(names)}")
        config = _parse_json(_read_member(archive, _CONFIG, names))
        _check_top_level(config)
        version = config["format_version"]
        expected = {_CONFIG, _WEIGHTS[version]}
        if set(names) != expected:
            extra = sorted(set(names) - expected)
            missing = sorted(expected - set(names))
            raise _Invalid(
                f"format_version {version} archives hold exactly {sorted(expected)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        state = None
        if weights:
            data = _read_member(archive, _WEIGHTS[version], names)
            state = _read_safetensors(data) if version == 2 else _read_torch_pickle(data)
    return config, state


def _read_member(archive: zipfile.ZipFile, name: str, names: list[str]) -> bytes:
    if name not in names:
        raise _Invalid(f"member {name!r} is missing (the archive holds {sorted(names)})")
    try:
        return archive.read(name)  # checks the CRC-32
    except _ZIP_ERRORS as exc:
        raise _Invalid(f"member {name!r} is damaged ({_describe(exc)})") from None


def _parse_json(data: bytes) -> Any:
    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            dup = sorted({k for k, _ in pairs if sum(k == q for q, _ in pairs) > 1})
            raise ValueError(f"duplicate keys {dup}")
        return out

    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constant,
                          object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _Invalid(f"{_CONFIG} is not valid JSON ({_describe(exc)})") from None


def _read_safetensors(data: bytes) -> dict[str, Any]:
    from safetensors.torch import load as st_load

    try:
        return st_load(data)
    except Exception as exc:  # SafetensorError and whatever a crafted header provokes
        raise _Invalid(f"{_WEIGHTS[2]} is not a valid safetensors file ({_describe(exc)})") \
            from None


def _weights_only_load_is_safe() -> bool:
    """Whether ``torch.load(weights_only=True)`` cannot execute code (torch >= 2.6)."""
    return torch.__version__ >= "2.6"


def _read_torch_pickle(data: bytes) -> dict[str, Any]:
    """The ``state_dict`` of a ``format_version`` 1 file, only where torch reads it safely."""
    if not _weights_only_load_is_safe():
        raise _Invalid(
            f"format_version 1 stores the weights as a pickle ({_WEIGHTS[1]}), which torch "
            f"{torch.__version__} cannot read without the risk of executing code "
            "(CVE-2025-32434); load the file once with torch >= 2.6 and save it again"
        )
    import io

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but plain tensors, RuntimeError...
        raise _Invalid(f"{_WEIGHTS[1]} is not a plain state_dict ({_describe(exc)})") from None
    if not isinstance(state, dict):
        raise _Invalid(f"{_WEIGHTS[1]} holds a {type(state).__name__}, not a state_dict")
    return state


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -------------------------------------------------------------------------------- the checks
def _check_top_level(config: Any) -> None:
    if not isinstance(config, dict):
        raise _Invalid(f"{_CONFIG} holds a {type(config).__name__}, not an object")
    version = config.get("format_version")
    if not _is_int(version) or version not in _WEIGHTS:
        newer = _is_int(version) and version > FORMAT_VERSION
        raise _Invalid(
            f"format_version {version!r} is not supported (this latentode reads "
            f"{min(_WEIGHTS)} to {FORMAT_VERSION})" + ("; upgrade latentode" if newer else "")
        )
    _keys(config, _TOP_KEYS, _CONFIG, optional=_OPTIONAL_TOP_KEYS)
    for key in ("params", "fitted", "model_hparams", "time_encoder", "scaler", "history"):
        if not isinstance(config[key], dict):
            raise _Invalid(f"{key} must be a JSON object, got {_show(config[key])}")
    for key in ("class", "latentode_version"):
        if not isinstance(config[key], str):
            raise _Invalid(f"{key} must be a string, got {_show(config[key])}")


def _check_config(config: dict[str, Any], cls: type[BaseEstimator]) -> BaseEstimator:
    """Check every field but the weights; return an unfitted ``cls`` with the stored params."""
    _check_top_level(config)
    est = _check_params(config["params"], cls, saved=config["class"])
    n_channels = _check_fitted(config["fitted"])
    _check_hparams(config["model_hparams"], n_channels)
    _check_static_and_classes(config, est)
    _check_time_encoder(config["time_encoder"])
    _check_scaler(config["scaler"], n_channels)
    _check_history(config["history"])
    return est


def _check_params(params: dict[str, Any], cls: type[BaseEstimator],
                  saved: str | None = None) -> BaseEstimator:
    known = set(cls._get_param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        hint = ("" if saved is None or saved == cls.__name__ else
                f"; the file was saved by {saved}: load it with its own class ({saved}.load)")
        raise _Invalid(f"params: unknown parameters {unknown} for {cls.__name__}{hint}")
    # a parameter absent from the file (saved before it existed) takes the value that gives the
    # former behaviour (as for an older pickle), not today's default
    older = {k: v for k, v in getattr(cls, "_added_params", dict)().items() if k in known}
    est = cls(**{**older, **_params_from_json(params)})
    try:
        est._validate_params()  # the checks fit runs
    except (ValueError, TypeError) as exc:
        raise _Invalid(f"params: {exc}") from None
    if "device" in params:
        _check_device(params["device"], "params: device", allow_auto=True)
    return est


def _check_device(value: Any, where: str, allow_auto: bool = False) -> None:
    if allow_auto and value == "auto":
        return
    ok = isinstance(value, str)
    if ok:
        try:
            ok = torch.device(value).type in ("cpu", "cuda")
        except (RuntimeError, TypeError, ValueError):
            ok = False
    if not ok:
        allowed = "'auto', " if allow_auto else ""
        raise _Invalid(f"{where} must be {allowed}'cpu', 'cuda' or 'cuda:N', got {_show(value)}")


def _check_fitted(fitted: dict[str, Any]) -> int:
    """Check the fitted attributes; return the number of target channels."""
    _keys(fitted, _FITTED_KEYS, "fitted", optional=_OPTIONAL_FITTED_KEYS)
    _label(fitted["time_col_"], "fitted: time_col_")
    if fitted["id_col_"] is not None:
        _label(fitted["id_col_"], "fitted: id_col_")
    targets, names = fitted["target_cols_"], fitted["feature_names_in_"]
    for key, value in (("target_cols_", targets), ("feature_names_in_", names)):
        if not isinstance(value, list) or not value:
            raise _Invalid(f"fitted: {key} must be a non-empty list, got {_show(value)}")
        for label in value:
            _label(label, f"fitted: {key}")
        if len(set(value)) != len(value):
            raise _Invalid(f"fitted: {key} has duplicate columns: {value}")
    roles = [fitted["time_col_"]] + targets
    if fitted["id_col_"] is not None:
        roles.append(fitted["id_col_"])
    if len(set(roles)) != len(roles):
        raise _Invalid("fitted: the time, id and target columns must be distinct")
    absent = [c for c in roles if c not in names]
    if absent:
        raise _Invalid(f"fitted: columns {absent} are missing from feature_names_in_")
    n_in = fitted["n_features_in_"]
    if not _is_int(n_in) or n_in != len(names):
        raise _Invalid(f"fitted: n_features_in_ must be {len(names)} (the length of "
                       f"feature_names_in_), got {_show(n_in)}")
    _check_device(fitted["device_"], "fitted: device_")
    static = fitted.get("static_cols_", [])
    if not isinstance(static, list) or ("static_cols_" in fitted and not static):
        raise _Invalid(f"fitted: static_cols_ must be a non-empty list, got {_show(static)}")
    for label in static:
        _label(label, "fitted: static_cols_")
    if len(set(static)) != len(static) or set(static) & set(roles):
        raise _Invalid("fitted: static_cols_ must be distinct columns, none of them the time, "
                       "id or a target column")
    if [c for c in names if c not in roles] != static:
        raise _Invalid("fitted: feature_names_in_ must be the id, time, target and static "
                       "columns")
    if "classes_" in fitted:
        classes = fitted["classes_"]
        ok = (isinstance(classes, list) and len(classes) >= 2
              and all(isinstance(c, (str, int, float, bool)) for c in classes)
              and len({(type(c), c) for c in classes}) == len(classes))
        if not ok:
            raise _Invalid(f"fitted: classes_ must be a list of two or more distinct strings, "
                           f"numbers or booleans, got {_show(classes)}")
    return len(targets)


def _check_static_and_classes(config: dict[str, Any], est: BaseEstimator) -> None:
    """The static encoder fits the static columns and the network; classes fit both too."""
    from sklearn.base import is_classifier

    from .data import StaticEncoder

    fitted, hparams = config["fitted"], config["model_hparams"]
    static = fitted.get("static_cols_", [])
    if bool(static) != ("static_encoder" in config):
        raise _Invalid("static_encoder must be present exactly when fitted: static_cols_ is")
    width = 0
    if static:
        try:
            encoder = StaticEncoder.from_dict(config["static_encoder"])
        except (ValueError, TypeError) as exc:
            raise _Invalid(f"static_encoder: {exc}") from None
        if encoder.columns != static:
            raise _Invalid(f"static_encoder: columns {encoder.columns} differ from fitted: "
                           f"static_cols_ {static}")
        width = encoder.width
    if hparams.get("n_static", 0) != width:
        raise _Invalid(f"model_hparams: n_static must be {width} (the encoded static "
                       f"covariates), got {_show(hparams.get('n_static', 0))}")
    n_classes = len(fitted["classes_"]) if "classes_" in fitted else 0
    if hparams.get("n_classes", 0) != n_classes:
        raise _Invalid(f"model_hparams: n_classes must be {n_classes} (the length of fitted: "
                       f"classes_), got {_show(hparams.get('n_classes', 0))}")
    if is_classifier(est) != bool(n_classes):
        what = "a classifier" if n_classes else "not a classifier"
        raise _Invalid(f"the file holds {what}; load it with its own class "
                       f"({config['class']})")
    head = hparams.get("head_inputs", "latent")
    if n_classes and head != getattr(est, "head_inputs", "latent"):
        raise _Invalid(f"model_hparams: head_inputs is {_show(head)} but params: head_inputs is "
                       f"{_show(getattr(est, 'head_inputs', 'latent'))}")


# model hyper-parameters: (check, whether the key must be present)
def _hp_int(low: int, optional: bool = False) -> Callable[[Any], bool]:
    return lambda v: (optional and v is None) or (_is_int(v) and v >= low)


def _hp_pos(optional: bool = False) -> Callable[[Any], bool]:
    return lambda v: (optional and v is None) or (_is_num(v) and math.isfinite(v) and v > 0)


def _hp_choice(options: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in options


# hyper-parameters added after format_version 2 was first written: a file without them was
# saved before they existed and gets LatentODE's default, or the former value where that differs
# (LatentODE.FORMER_HPARAMS): the network it describes is unchanged
_ADDED_HPARAMS = ("n_static", "n_classes", "likelihood", "obs_df", "linear_term", "readout",
                  "classifier_dropout", "head_inputs", "readout_sides", "readout_split",
                  "mtan_ref_points", "mtan_embed_dim", "dynamics_activation",
                  "forecast_noise", "readout_reach")


def _hparam_checks() -> dict[str, tuple[Callable[[Any], bool], str]]:
    from .nn.classifier import HEAD_INPUTS
    from .nn.dynamics import DYNAMICS_ACTIVATIONS
    from .nn.readout import READOUT_REACHES, READOUT_SIDES, READOUT_SPLITS
    from .nn.registry import ENCODERS, LIKELIHOODS, READOUTS
    from .ode import GRADIENTS, METHODS

    return {
        "n_channels": (_hp_int(1), "an integer >= 1"),
        "latent_dim": (_hp_int(1), "an integer >= 1"),
        "rec_dim": (_hp_int(1), "an integer >= 1"),
        "encoder": (_hp_choice(ENCODERS), f"one of {ENCODERS}"),
        "units": (_hp_int(1), "an integer >= 1"),
        "n_layers": (_hp_int(0), "an integer >= 0"),
        "gru_units": (_hp_int(1), "an integer >= 1"),
        "poisson_process": (lambda v: isinstance(v, bool), "true or false"),
        "method": (_hp_choice(tuple(METHODS)), f"one of {tuple(METHODS)}"),
        "rtol": (_hp_pos(), "a positive finite number"),
        "atol": (_hp_pos(), "a positive finite number"),
        "gradient": (_hp_choice(tuple(GRADIENTS)), f"one of {tuple(GRADIENTS)}"),
        "obs_std": (lambda v: v == "learned" or _hp_pos()(v),
                    "'learned' or a positive finite number"),
        "decoder_layers": (_hp_int(0), "an integer >= 0"),
        "rec_layers": (_hp_int(0, optional=True), "null or an integer >= 0"),
        "enc_step_size": (_hp_pos(), "a positive finite number"),
        "step_size": (_hp_pos(optional=True), "null or a positive finite number"),
        "max_steps": (_hp_int(1), "an integer >= 1"),
        "obs_std_init": (_hp_pos(), "a positive finite number"),
        "obs_std_floor": (_hp_pos(), "a positive finite number"),
        "likelihood": (_hp_choice(LIKELIHOODS), f"one of {LIKELIHOODS}"),
        "obs_df": (lambda v: v == "learned" or _hp_pos()(v),
                   "'learned' or a positive finite number"),
        "linear_term": (lambda v: isinstance(v, bool), "true or false"),
        "readout": (_hp_choice(READOUTS), f"one of {READOUTS}"),
        "n_static": (_hp_int(0), "an integer >= 0"),
        "n_classes": (lambda v: _is_int(v) and (v == 0 or v >= 2), "0 or an integer >= 2"),
        "classifier_dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
        "head_inputs": (_hp_choice(HEAD_INPUTS), f"one of {HEAD_INPUTS}"),
        "readout_sides": (_hp_choice(READOUT_SIDES), f"one of {READOUT_SIDES}"),
        "readout_split": (_hp_choice(READOUT_SPLITS), f"one of {READOUT_SPLITS}"),
        "mtan_ref_points": (_hp_int(2), "an integer >= 2"),
        "mtan_embed_dim": (_hp_int(2, optional=True), "null or an integer >= 2"),
        "dynamics_activation": (_hp_choice(tuple(DYNAMICS_ACTIVATIONS)),
                                f"one of {tuple(DYNAMICS_ACTIVATIONS)}"),
        "forecast_noise": (lambda v: isinstance(v, bool), "true or false"),
        "readout_reach": (lambda v: v is None or _hp_choice(READOUT_REACHES)(v),
                          f"null or one of {READOUT_REACHES}"),
    }


# layer counts bounded by the number of stored tensors (each layer has at least one)
_LAYER_HPARAMS = ("n_layers", "decoder_layers", "rec_layers")


def _check_hparams(hparams: dict[str, Any], n_channels: int) -> None:
    from .nn import LatentODE

    signature = inspect.signature(LatentODE).parameters
    unknown = sorted(set(hparams) - set(signature))
    if unknown:
        raise _Invalid(f"model_hparams: unknown hyper-parameters {unknown}")
    checks = _hparam_checks()
    # written by every save of this version (the added ones get LatentODE's default, or its
    # former value, when absent)
    required = [k for k in checks if k in signature and k not in _ADDED_HPARAMS]
    missing = [k for k in required if k not in hparams]
    if missing:
        raise _Invalid(f"model_hparams: missing {missing}")
    for key, value in hparams.items():
        check, expected = checks.get(key, (_is_json_scalar, "a JSON scalar"))
        if not check(value):
            raise _Invalid(f"model_hparams: {key} must be {expected}, got {_show(value)}")
    if hparams["n_channels"] != n_channels:
        raise _Invalid(f"model_hparams: n_channels is {hparams['n_channels']} but there are "
                       f"{n_channels} target columns")


def _check_time_encoder(state: dict[str, Any]) -> None:
    from .data import TimeEncoder
    from .data.time import _UNIT_NS

    where = "time_encoder"
    _keys(state, ("unit", "scale", "kind", "tz", "epoch", "origin", "scale_"), where)
    if state["unit"] not in _UNIT_NS:
        raise _Invalid(f"{where}: unit must be one of {sorted(_UNIT_NS)}, got "
                       f"{_show(state['unit'])}")
    if not _hp_pos(optional=True)(state["scale"]):
        raise _Invalid(f"{where}: scale must be null or a positive finite number, got "
                       f"{_show(state['scale'])}")
    kind = state["kind"]
    if kind not in ("numeric", "datetime"):
        raise _Invalid(f"{where}: kind must be 'numeric' or 'datetime', got {_show(kind)}")
    if not (_is_num(state["origin"]) and math.isfinite(state["origin"])):
        raise _Invalid(f"{where}: origin must be a finite number, got {_show(state['origin'])}")
    if not _hp_pos()(state["scale_"]):
        raise _Invalid(f"{where}: scale_ must be a positive finite number, got "
                       f"{_show(state['scale_'])}")
    if kind == "numeric":
        if state["tz"] is not None or state["epoch"] is not None:
            raise _Invalid(f"{where}: numeric times have no tz or epoch")
    else:
        if not (_is_int(state["epoch"]) and -(2**63) < state["epoch"] < 2**63):
            raise _Invalid(f"{where}: epoch must be an integer of nanoseconds, got "
                           f"{_show(state['epoch'])}")
        if state["tz"] is not None and not isinstance(state["tz"], str):
            raise _Invalid(f"{where}: tz must be null or a string, got {_show(state['tz'])}")
        try:
            TimeEncoder.from_dict(state)
        except Exception as exc:  # an unknown time zone, an out-of-range epoch
            raise _Invalid(f"{where}: {_describe(exc)}") from None


def _check_scaler(state: dict[str, Any], n_channels: int) -> None:
    where = "scaler"
    _keys(state, ("mean", "scale", "n_observed"), where)
    checks = {
        "mean": (lambda v: _is_num(v) and math.isfinite(v), "finite numbers"),
        "scale": (_hp_pos(), "positive finite numbers"),
        "n_observed": (_hp_int(0), "integers >= 0"),
    }
    for key, (check, expected) in checks.items():
        value = state[key]
        if not isinstance(value, list) or len(value) != n_channels:
            raise _Invalid(f"{where}: {key} must be a list of {n_channels} values (one per "
                           f"target column), got {_show(value)}")
        if not all(check(v) for v in value):
            raise _Invalid(f"{where}: {key} must hold {expected}, got {_show(value)}")


def _check_history(state: dict[str, Any]) -> None:
    from .training import History
    from .training.history import MONITORS, STOP_REASONS

    where = "history"
    _keys(state, tuple(f.name for f in dataclasses.fields(History)), where)
    records = state["records"]
    if not isinstance(records, list):
        raise _Invalid(f"{where}: records must be a list, got {_show(records)}")
    for i, rec in enumerate(records):
        ok = isinstance(rec, dict) and all(
            _is_json_scalar(v) or (isinstance(v, list) and all(map(_is_json_scalar, v)))
            for v in rec.values())
        if not ok:
            raise _Invalid(f"{where}: records[{i}] must be an object of numbers, got "
                           f"{_show(rec)}")
    if not _hp_int(0, optional=True)(state["best_epoch"]):
        raise _Invalid(f"{where}: best_epoch must be null or an integer >= 0, got "
                       f"{_show(state['best_epoch'])}")
    for key in ("best_val_loss", "best_loss"):
        if not (state[key] is None or _is_num(state[key])):
            raise _Invalid(f"{where}: {key} must be null or a number, got {_show(state[key])}")
    if state["monitor"] not in MONITORS:
        raise _Invalid(f"{where}: monitor must be one of {tuple(MONITORS)}, got "
                       f"{_show(state['monitor'])}")
    if not (state["stopped_reason"] is None or state["stopped_reason"] in STOP_REASONS):
        raise _Invalid(f"{where}: stopped_reason must be null or one of {STOP_REASONS}, got "
                       f"{_show(state['stopped_reason'])}")


def _check_weights(state: dict[str, Any], hparams: dict[str, Any],
                   aliases: bool = False) -> dict[str, torch.Tensor]:
    """The stored tensors must be exactly those of the network ``hparams`` describes.

    ``aliases``: the file may also hold the second names of shared tensors (``format_version``
    1 stored the whole ``state_dict``); they must equal the first. Returns the tensors under
    their first names.
    """
    from .nn import LatentODE

    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise _Invalid(f"weights: entry {_show(name)} is a {type(value).__name__}, not a "
                           "tensor")
    for key in _LAYER_HPARAMS:  # each layer is a module: bound them before building any
        if _is_int(hparams.get(key)) and hparams[key] > len(state):
            raise _Invalid(f"model_hparams: {key}={hparams[key]} does not fit the "
                           f"{len(state)} stored tensors")
    try:
        with torch.device("meta"):  # names and shapes only: no memory, whatever the sizes
            skeleton = LatentODE(**LatentODE.with_former_hparams(hparams))
    except Exception as exc:  # the constructor's own checks
        raise _Invalid(f"model_hparams: {_describe(exc)}") from None
    canonical = stored_names(skeleton)
    reference = skeleton.state_dict()
    allowed = set(reference) if aliases else {k for k, c in canonical.items() if k == c}
    missing = [k for k, c in canonical.items()
               if k == c and k not in state and k not in LatentODE.OPTIONAL_STATE]
    unexpected = sorted(set(state) - allowed)
    if missing or unexpected:
        raise _Invalid(
            "weights do not match the network of model_hparams"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {unexpected}" if unexpected else "")
        )
    for name, value in state.items():
        ref = reference[name]
        if tuple(value.shape) != tuple(ref.shape) or value.dtype != ref.dtype:
            raise _Invalid(
                f"weights: {name!r} is {value.dtype} {tuple(value.shape)}, the network of "
                f"model_hparams needs {ref.dtype} {tuple(ref.shape)}"
            )
        if name in LatentODE.POSITIVE_STATE:
            if not bool((value > 0).all()):
                raise _Invalid(f"weights: {name!r} has values that are not positive")
        elif name in LatentODE.UNBOUNDED_STATE:
            if bool(torch.isnan(value).any()):
                raise _Invalid(f"weights: {name!r} has NaN values")
        elif value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _Invalid(f"weights: {name!r} has non-finite values")
    out = {}
    for name, value in state.items():
        first = canonical[name]
        if first != name:
            if not torch.equal(value, state[first]):
                raise _Invalid(f"weights: {name!r} and {first!r} are one tensor but differ")
            continue
        out[name] = value
    return out


# ------------------------------------------------------------------------------------ helpers
def _keys(obj: dict[str, Any], required: tuple[str, ...], where: str,
          optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in required if k not in obj]
    unknown = sorted(set(obj) - set(required) - set(optional))
    if missing or unknown:
        raise _Invalid(
            f"{where}: "
            + (f"missing keys {missing}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"unknown keys {unknown}" if unknown else "")
        )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_json_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float))


def _label(value: Any, where: str) -> None:
    """Column labels must survive JSON: strings or numbers."""
    if not (isinstance(value, str) or (_is_num(value) and not isinstance(value, bool))):
        raise _Invalid(f"{where}: column labels must be strings or numbers, got {_show(value)}")


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _version() -> str:
    from . import __version__

    return __version__
