"""Saving / loading fitted estimators (:mod:`latentode.io`)."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import latentode.io as lio
from latentode import LatentODERegressor
from latentode.io import FORMAT_VERSION, read_config

INVALID = "not a valid latentode file: "


@pytest.fixture(scope="module")
def df(make_oscillators) -> pd.DataFrame:
    return make_oscillators(n_series=6, n_points=15, span=5.0, missing=0.3)


@pytest.fixture(scope="module")
def fitted(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(df)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory) -> str:
    """One saved file shared by the tampering tests (each writes its own copy)."""
    path = tmp_path_factory.mktemp("io") / "model.latentode"
    fitted.save(path)
    return str(path)


def _parts(path) -> tuple[dict, dict]:
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        state = st_load(archive.read("weights.safetensors"))
    return config, state


def _write(path, members: dict[str, bytes | str]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _write_parts(path, config: dict, state: dict) -> None:
    _write(path, {"config.json": json.dumps(config), "weights.safetensors": st_save(state)})


def _invalid(path, match: str):
    """load raises the one ValueError, naming the problem."""
    with pytest.raises(ValueError, match=INVALID) as info:
        LatentODERegressor.load(path)
    assert match in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError) and type(info.value) is ValueError
    return info.value


# ------------------------------------------------------------------------------ round trip
def test_save_load_identical(fitted, df, tmp_path):
    path = tmp_path / "sub" / "model.latentode"
    fitted.save(path)
    loaded = LatentODERegressor.load(path)
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
    pd.testing.assert_frame_equal(loaded.extrapolate(df, horizon=1.5, n_points=4),
                                  fitted.extrapolate(df, horizon=1.5, n_points=4),
                                  check_exact=True)
    pd.testing.assert_frame_equal(
        loaded.predict(df, quantiles=(0.1, 0.9), n_samples=20),
        fitted.predict(df, quantiles=(0.1, 0.9), n_samples=20), check_exact=True)
    assert loaded.score(df) == fitted.score(df)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.target_cols_ == fitted.target_cols_
    assert loaded.time_col_ == "t" and loaded.id_col_ == "id"
    assert list(loaded.feature_names_in_) == list(fitted.feature_names_in_)
    assert loaded.n_features_in_ == fitted.n_features_in_
    assert loaded.history_.to_dict() == fitted.history_.to_dict()
    assert loaded.device_ == torch.device("cpu")
    assert not loaded.model_.training
    for name, value in fitted.model_.state_dict().items():
        assert torch.equal(loaded.model_.state_dict()[name], value), name


def test_poisson_odernn_round_trip(df, tmp_path):
    """Shared modules (ode_func wraps dynamics and intensity) are stored once, restored both."""
    est = LatentODERegressor(**{**TINY, "encoder": "odernn", "poisson_process": True,
                                "max_epochs": 1}).fit(df)
    est.save(tmp_path / "p.latentode")
    loaded = LatentODERegressor.load(tmp_path / "p.latentode")
    _, state = _parts(tmp_path / "p.latentode")
    full = est.model_.state_dict()
    assert not any(k.startswith("ode_func.") for k in state)
    assert len(state) < len(full)
    for name, value in full.items():
        assert torch.equal(loaded.model_.state_dict()[name], value), name
    assert loaded.model_.ode_func.dynamics is loaded.model_.dynamics
    pd.testing.assert_frame_equal(loaded.predict_intensity(df), est.predict_intensity(df),
                                  check_exact=True)


def test_archive_layout_is_json_plus_safetensors(fitted, saved):
    with zipfile.ZipFile(saved) as archive:
        assert sorted(archive.namelist()) == ["config.json", "weights.safetensors"]
    config, state = _parts(saved)
    assert config["format_version"] == FORMAT_VERSION == 2
    assert config["class"] == "LatentODERegressor"
    assert config["params"]["latent_dim"] == 3
    assert {"time_encoder", "scaler", "history", "model_hparams"} <= set(config)
    assert set(state) == {k for k in fitted.model_.state_dict() if not k.startswith("ode_func.")}
    assert read_config(saved)["fitted"]["target_cols_"] == ["x", "v"]


def test_save_is_deterministic(fitted, saved, tmp_path):
    fitted.save(tmp_path / "again.latentode")
    assert (tmp_path / "again.latentode").read_bytes() == open(saved, "rb").read()


def test_torch_device_param_is_saved(df, tmp_path):
    est = LatentODERegressor(**{**TINY, "device": torch.device("cpu"), "max_epochs": 1}).fit(df)
    est.save(tmp_path / "d.latentode")
    assert read_config(tmp_path / "d.latentode")["params"]["device"] == "cpu"
    assert LatentODERegressor.load(tmp_path / "d.latentode").device == "cpu"


def test_datetime_model_round_trip(df, tmp_path):
    dt = df.copy()
    dt["t"] = pd.Timestamp("2023-05-01 12:00", tz="Europe/Paris") + pd.to_timedelta(dt["t"],
                                                                                    unit="D")
    est = LatentODERegressor(**TINY).fit(dt)
    est.save(tmp_path / "dt.latentode")
    loaded = LatentODERegressor.load(tmp_path / "dt.latentode", device="cpu")
    a = est.extrapolate(dt, horizon=pd.Timedelta(days=1), n_points=3)
    b = loaded.extrapolate(dt, horizon=pd.Timedelta(days=1), n_points=3)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert pd.api.types.is_datetime64_any_dtype(b["t"])
    assert str(b["t"].dt.tz) == "Europe/Paris"


# ------------------------------------------------------------------------------ saving
def test_save_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        LatentODERegressor(**TINY).save(tmp_path / "m.latentode")
    assert os.listdir(tmp_path) == []


def test_callable_param_cannot_be_saved(fitted, tmp_path):
    est = copy.deepcopy(fitted).set_params(kl_warmup=lambda epoch, step: 1.0)
    with pytest.raises(ValueError, match="kl_warmup"):
        est.save(tmp_path / "m.latentode")
    assert os.listdir(tmp_path) == []


def test_save_refuses_what_load_would_refuse(fitted, tmp_path):
    est = copy.deepcopy(fitted).set_params(lr=-5)  # set after fitting
    with pytest.raises(ValueError, match=r"would not load back: params: lr must be"):
        est.save(tmp_path / "m.latentode")
    est = copy.deepcopy(fitted)
    est.target_cols_ = [("x", 1), "v"]  # a label JSON cannot give back
    with pytest.raises(ValueError, match="column labels must be strings or numbers"):
        est.save(tmp_path / "m.latentode")
    assert os.listdir(tmp_path) == []


def test_save_to_a_directory_leaves_nothing(fitted, tmp_path):
    folder = tmp_path / "model_dir"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="give a file name"):
        fitted.save(folder)
    with pytest.raises(IsADirectoryError):
        fitted.save(str(tmp_path / "new_dir") + os.sep)
    assert os.listdir(tmp_path) == ["model_dir"]  # nothing created, not even new_dir
    assert os.listdir(folder) == []


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(fitted, tmp_path, monkeypatch):
    path = tmp_path / "m.latentode"
    path.write_bytes(b"previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(lio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(path)
    assert os.listdir(tmp_path) == ["m.latentode"]
    assert path.read_bytes() == b"previous"

    monkeypatch.undo()
    monkeypatch.setattr(lio.zipfile.ZipFile, "writestr",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fitted.save(path)
    assert os.listdir(tmp_path) == ["m.latentode"]
    assert path.read_bytes() == b"previous"


def test_saved_file_has_ordinary_permissions(fitted, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    fitted.save(tmp_path / "m.latentode")
    assert os.stat(tmp_path / "m.latentode").st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------ no code runs
class _Payload:
    called = False

    def __reduce__(self):
        return (_Payload._trigger, ())

    @staticmethod
    def _trigger():
        _Payload.called = True
        return None


def _pickled_payload() -> bytes:
    buffer = io.BytesIO()
    torch.save({"payload": _Payload()}, buffer)
    return buffer.getvalue()


def test_load_never_unpickles_objects(saved, tmp_path):
    """A weights member holding an arbitrary pickled object is refused, not executed."""
    config, _ = _parts(saved)
    payload = _pickled_payload()
    _Payload.called = False
    # the current layout: the pickle where the safetensors weights belong
    _write(tmp_path / "evil2.latentode", {"config.json": json.dumps(config),
                                          "weights.safetensors": payload})
    _invalid(tmp_path / "evil2.latentode", "weights.safetensors is not a valid safetensors")
    # the old layout (format_version 1), read by torch.load(weights_only=True) on torch >= 2.6
    _write(tmp_path / "evil1.latentode", {"config.json": json.dumps({**config,
                                                                    "format_version": 1}),
                                          "weights.pt": payload})
    _invalid(tmp_path / "evil1.latentode", "weights.pt is not a plain state_dict")
    assert not _Payload.called


def _v1_file(fitted, saved, path) -> None:
    config, _ = _parts(saved)
    buffer = io.BytesIO()
    torch.save(fitted.model_.state_dict(), buffer)  # v1 stored the whole state_dict
    _write(path, {"config.json": json.dumps({**config, "format_version": 1}),
                  "weights.pt": buffer.getvalue()})


@pytest.mark.skipif(torch.__version__ < "2.6", reason="format 1 needs torch >= 2.6")
def test_format_1_files_still_load(fitted, saved, df, tmp_path):
    _v1_file(fitted, saved, tmp_path / "v1.lode")
    loaded = LatentODERegressor.load(tmp_path / "v1.lode")
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
    loaded.save(tmp_path / "v2.latentode")  # converted
    assert read_config(tmp_path / "v2.latentode")["format_version"] == 2


def test_format_1_refused_where_torch_load_is_unsafe(fitted, saved, tmp_path, monkeypatch):
    _v1_file(fitted, saved, tmp_path / "v1.lode")
    monkeypatch.setattr(lio, "_weights_only_load_is_safe", lambda: False)
    _invalid(tmp_path / "v1.lode", "load the file once with torch >= 2.6 and save it again")


def test_format_1_shared_tensors_must_agree(fitted, saved, tmp_path):
    config, _ = _parts(saved)
    state = {k: v.clone() for k, v in fitted.model_.state_dict().items()}
    state["ode_func.net.0.bias"] += 1.0
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _write(tmp_path / "v1.lode", {"config.json": json.dumps({**config, "format_version": 1}),
                                  "weights.pt": buffer.getvalue()})
    if torch.__version__ < "2.6":
        _invalid(tmp_path / "v1.lode", "torch >= 2.6")
    else:
        _invalid(tmp_path / "v1.lode", "'ode_func.net.0.bias' and 'dynamics.net.0.bias' are one")


# ------------------------------------------------------------------------------ tampered config
def _set(section, key, value):
    def edit(config):
        if section is None:
            config[key] = value
        else:
            config[section][key] = value
    return edit


def _del(section, key):
    def edit(config):
        del (config if section is None else config[section])[key]
    return edit


CONFIG_CASES = {
    # the constructor parameters: the checks of fit
    "lr=-5": (_set("params", "lr", -5), "params: lr must be a positive finite number, got -5"),
    "latent_dim='abc'": (_set("params", "latent_dim", "abc"),
                         "params: latent_dim must be an integer >= 1, got 'abc'"),
    "encoder": (_set("params", "encoder", "lstm"), "params: encoder must be one of"),
    "early_stopping": (_set("params", "early_stopping", "yes"), "early_stopping must be True"),
    "kl_warmup": (_set("params", "kl_warmup", [1, 2]), "kl_warmup must be None"),
    "param device": (_set("params", "device", "tpu"), "params: device must be 'auto'"),
    "param device type": (_set("params", "device", 3), "params: device must be"),
    "unknown param": (_set("params", "lr_warmup", 3),
                      "params: unknown parameters ['lr_warmup']"),
    "params not an object": (_set(None, "params", [1]), "params must be a JSON object"),
    # the top level
    "format_version future": (_set(None, "format_version", FORMAT_VERSION + 1),
                              "upgrade latentode"),
    "format_version str": (_set(None, "format_version", "2"), "format_version '2' is not"),
    "format_version bool": (_set(None, "format_version", True), "format_version True is not"),
    "missing scaler": (_del(None, "scaler"), "config.json: missing keys ['scaler']"),
    "unknown top key": (_set(None, "extra", 1), "config.json: unknown keys ['extra']"),
    "class": (_set(None, "class", 3), "class must be a string"),
    # fitted attributes
    "missing time_col_": (_del("fitted", "time_col_"), "fitted: missing keys ['time_col_']"),
    "time_col_ list": (_set("fitted", "time_col_", ["t"]), "fitted: time_col_: column labels"),
    "target_cols_ str": (_set("fitted", "target_cols_", "x"),
                         "fitted: target_cols_ must be a non-empty list"),
    "target_cols_ dup": (_set("fitted", "target_cols_", ["x", "x"]), "duplicate columns"),
    "target not a feature": (_set("fitted", "target_cols_", ["x", "w"]),
                             "columns ['w'] are missing from feature_names_in_"),
    "n_features_in_": (_set("fitted", "n_features_in_", 9), "n_features_in_ must be 4"),
    "device_ unknown": (_set("fitted", "device_", "gpu"), "fitted: device_ must be 'cpu'"),
    "device_ int": (_set("fitted", "device_", 0), "fitted: device_ must be"),
    "device_ missing": (_del("fitted", "device_"), "fitted: missing keys ['device_']"),
    "fitted not an object": (_set(None, "fitted", None), "fitted must be a JSON object"),
    # network hyper-parameters
    "hp latent_dim shape": (_set("model_hparams", "latent_dim", 4),
                            "the network of model_hparams needs torch.float32"),
    "hp latent_dim str": (_set("model_hparams", "latent_dim", "abc"),
                          "model_hparams: latent_dim must be an integer >= 1, got 'abc'"),
    "hp latent_dim huge": (_set("model_hparams", "latent_dim", 10**7),
                           "the network of model_hparams needs"),
    "hp n_layers huge": (_set("model_hparams", "n_layers", 10**9),
                         "n_layers=1000000000 does not fit the"),
    "hp rtol missing": (_del("model_hparams", "rtol"), "model_hparams: missing ['rtol']"),
    "hp rtol negative": (_set("model_hparams", "rtol", -1e-3), "rtol must be a positive"),
    "hp method": (_set("model_hparams", "method", "rk45"), "model_hparams: method must be"),
    "hp poisson": (_set("model_hparams", "poisson_process", True),
                   "weights do not match the network of model_hparams; missing"),
    "hp encoder": (_set("model_hparams", "encoder", "odernn"),
                   "weights do not match the network of model_hparams"),
    "hp n_channels": (_set("model_hparams", "n_channels", 3),
                      "n_channels is 3 but there are 2 target columns"),
    "hp unknown": (_set("model_hparams", "dropout", 0.1),
                   "model_hparams: unknown hyper-parameters ['dropout']"),
    # time encoder
    "te scale_ missing": (_del("time_encoder", "scale_"), "time_encoder: missing keys"),
    "te scale_ negative": (_set("time_encoder", "scale_", -1.0), "scale_ must be a positive"),
    "te kind": (_set("time_encoder", "kind", "date"), "kind must be 'numeric' or 'datetime'"),
    "te unit": (_set("time_encoder", "unit", "years"), "time_encoder: unit must be one of"),
    "te origin": (_set("time_encoder", "origin", "0"), "origin must be a finite number"),
    "te tz numeric": (_set("time_encoder", "tz", "UTC"), "numeric times have no tz or epoch"),
    # scaler
    "scaler mean short": (_set("scaler", "mean", [0.0]), "scaler: mean must be a list of 2"),
    "scaler mean str": (_set("scaler", "mean", ["a", 0.0]), "scaler: mean must hold finite"),
    "scaler scale zero": (_set("scaler", "scale", [0.0, 1.0]), "must hold positive finite"),
    "scaler n_observed": (_del("scaler", "n_observed"), "scaler: missing keys ['n_observed']"),
    "scaler empty": (_set(None, "scaler", {}), "scaler: missing keys ['mean', 'scale'"),
    # history
    "history records": (_set("history", "records", "x"), "history: records must be a list"),
    "history record": (_set("history", "records", [1]), "history: records[0] must be"),
    "history nested": (_set("history", "records", [{"a": {"b": 1}}]), "records[0] must be"),
    "history monitor": (_set("history", "monitor", "loss"), "history: monitor must be"),
    "history best_epoch": (_del("history", "best_epoch"), "history: missing keys ['best_epoch']"),
    "history best_loss": (_set("history", "best_loss", "low"), "best_loss must be null or"),
    "history stopped": (_set("history", "stopped_reason", "boom"), "stopped_reason must be"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_tampered_config_is_refused(case, saved, tmp_path):
    edit, match = CONFIG_CASES[case]
    config, state = _parts(saved)
    edit(config)
    path = tmp_path / "tampered.latentode"
    _write_parts(path, config, state)
    _invalid(path, match)


def test_a_param_missing_from_the_file_takes_its_default(fitted, saved, df, tmp_path):
    """Files saved before a parameter existed load with its default."""
    config, state = _parts(saved)
    del config["params"]["patience"]
    _write_parts(tmp_path / "old.latentode", config, state)
    loaded = LatentODERegressor.load(tmp_path / "old.latentode")
    assert loaded.patience == clone(LatentODERegressor()).patience
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)


def test_tampered_datetime_encoder(df, tmp_path):
    dt = df.copy()
    dt["t"] = pd.Timestamp("2023-05-01") + pd.to_timedelta(dt["t"], unit="h")
    LatentODERegressor(**{**TINY, "max_epochs": 1}).fit(dt).save(tmp_path / "dt.latentode")
    for key, value, match in (("tz", "Mars/Olympus", "time_encoder: "),
                              ("epoch", None, "epoch must be an integer of nanoseconds"),
                              ("epoch", 2**70, "epoch must be an integer of nanoseconds"),
                              ("tz", 5, "tz must be null or a string")):
        config, state = _parts(tmp_path / "dt.latentode")
        config["time_encoder"][key] = value
        _write_parts(tmp_path / "bad.latentode", config, state)
        _invalid(tmp_path / "bad.latentode", match)


# ------------------------------------------------------------------------------ tampered weights
def _drop_one(state):
    state.pop("decoder.net.weight" if "decoder.net.weight" in state else sorted(state)[0])


WEIGHT_CASES = {
    "missing tensor": (_drop_one, "weights do not match the network of model_hparams; missing"),
    "extra tensor": (lambda s: s.update(extra=torch.zeros(2)), "unexpected ['extra']"),
    "second name of a shared tensor": (
        lambda s: s.update({"ode_func.net.0.bias": s["dynamics.net.0.bias"].clone()}),
        "unexpected ['ode_func.net.0.bias']"),
    "wrong shape": (lambda s: s.update({"spread_scale": torch.ones(3)}),
                    "'spread_scale' is torch.float32 (3,), the network of model_hparams needs "
                    "torch.float32 (2,)"),
    "wrong dtype": (lambda s: s.update({"spread_scale": s["spread_scale"].double()}),
                    "'spread_scale' is torch.float64 (2,)"),
    "nan weight": (lambda s: s["spread_scale"].fill_(float("nan")),
                   "'spread_scale' has non-finite values"),
    "empty": (lambda s: s.clear(), "n_layers=1 does not fit the 0 stored tensors"),
}


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_tampered_weights_are_refused(case, saved, tmp_path):
    edit, match = WEIGHT_CASES[case]
    config, state = _parts(saved)
    edit(state)
    _write_parts(tmp_path / "tampered.latentode", config, state)
    _invalid(tmp_path / "tampered.latentode", match)


# ------------------------------------------------------------------------------ damaged archives
def _raw(saved) -> bytes:
    with open(saved, "rb") as fh:
        return fh.read()


def _member_data_offset(saved, name: str) -> tuple[int, int]:
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo(name)
    raw = _raw(saved)
    start = info.header_offset
    n_name = int.from_bytes(raw[start + 26:start + 28], "little")
    n_extra = int.from_bytes(raw[start + 28:start + 30], "little")
    return start + 30 + n_name + n_extra, info.compress_size


def _flip(saved, name: str) -> bytes:
    raw = bytearray(_raw(saved))
    offset, size = _member_data_offset(saved, name)
    raw[offset + size // 2] ^= 0xFF
    return bytes(raw)


ARCHIVE_CASES = {
    "not a zip": (lambda saved: b"not a zip", "not a zip archive"),
    "empty file": (lambda saved: b"", "not a zip archive"),
    "truncated": (lambda saved: _raw(saved)[: len(_raw(saved)) // 2], "not a zip archive"),
    "truncated end": (lambda saved: _raw(saved)[:-10], "not a zip archive"),
    "flipped weights byte": (lambda saved: _flip(saved, "weights.safetensors"),
                             "member 'weights.safetensors' is damaged"),
    "flipped config byte": (lambda saved: _flip(saved, "config.json"),
                            "member 'config.json' is damaged"),
    "a pickle": (lambda saved: pickle.dumps({"a": 1}), "not a zip archive"),
}


@pytest.mark.parametrize("case", list(ARCHIVE_CASES))
def test_damaged_archive_is_refused(case, saved, tmp_path):
    make, match = ARCHIVE_CASES[case]
    path = tmp_path / "damaged.latentode"
    path.write_bytes(make(saved))
    _invalid(path, match)
    if "weights" not in case:  # read_config reads no weights
        with pytest.raises(ValueError, match=INVALID):
            read_config(path)


def _members(saved) -> dict[str, bytes]:
    with zipfile.ZipFile(saved) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


MEMBER_CASES = {
    "no weights": (lambda m: {"config.json": m["config.json"]},
                   "missing ['weights.safetensors']"),
    "no config": (lambda m: {"weights.safetensors": m["weights.safetensors"]},
                  "member 'config.json' is missing"),
    "extra member": (lambda m: {**m, "notes.txt": b"hi"}, "unexpected ['notes.txt']"),
    "old weights name": (lambda m: {"config.json": m["config.json"],
                                    "weights.pt": m["weights.safetensors"]},
                         "missing ['weights.safetensors']; unexpected ['weights.pt']"),
    "garbage weights": (lambda m: {**m, "weights.safetensors": b"\x00" * 40},
                        "weights.safetensors is not a valid safetensors file"),
    "huge header length": (lambda m: {**m, "weights.safetensors": (2**62).to_bytes(8, "little")
                                      + b"{}"},
                           "weights.safetensors is not a valid safetensors file"),
    "config not json": (lambda m: {**m, "config.json": b"{not json"}, "is not valid JSON"),
    "config NaN": (lambda m: {**m, "config.json": m["config.json"].replace(
        b'"lr": 0.01', b'"lr": NaN')}, "NaN is not a JSON number"),
    "config duplicate key": (lambda m: {**m, "config.json": m["config.json"].replace(
        b'"lr": 0.01', b'"lr": 0.01, "lr": 5')}, "duplicate keys ['lr']"),
    "config not utf-8": (lambda m: {**m, "config.json": b"\xff\xfe{}"}, "is not valid JSON"),
    "config a list": (lambda m: {**m, "config.json": b"[1, 2]"}, "holds a list, not an object"),
    "config deep": (lambda m: {**m, "config.json": b"[" * 100_000 + b"]" * 100_000},
                    "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(MEMBER_CASES))
def test_bad_member_is_refused(case, saved, tmp_path):
    edit, match = MEMBER_CASES[case]
    members = _members(saved)
    assert b'"lr": 0.01' in members["config.json"]  # the edits above find their target
    path = tmp_path / "bad.latentode"
    _write(path, edit(members))
    _invalid(path, match)


def test_duplicate_member_is_refused(saved, tmp_path):
    members = _members(saved)
    path = tmp_path / "dup.latentode"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _write(path, members)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("config.json", members["config.json"])
    _invalid(path, "duplicate members")


def test_any_flipped_byte_is_refused_or_harmless(fitted, saved, tmp_path):
    """Flip bytes across the file: load either raises the one ValueError or, where the byte
    only mattered to zip bookkeeping (a timestamp, an attribute), gives the same model."""
    raw = _raw(saved)
    rng = np.random.default_rng(0)
    positions = np.unique(np.r_[np.arange(0, 64), np.arange(len(raw) - 64, len(raw)),
                                rng.choice(len(raw), 150, replace=False)])
    path = tmp_path / "flipped.latentode"
    reference = fitted.model_.state_dict()
    refused = 0
    for pos in positions:
        data = bytearray(raw)
        data[pos] ^= 0x5A
        path.write_bytes(bytes(data))
        try:
            loaded = LatentODERegressor.load(path)
        except ValueError as exc:
            assert str(exc).startswith(INVALID), (pos, exc)
            refused += 1
            continue
        state = loaded.model_.state_dict()
        assert all(torch.equal(state[k], v) for k, v in reference.items()), pos
        assert loaded.get_params() == fitted.get_params(), pos
    assert refused > len(positions) // 2


def test_load_directory_or_missing_path_is_an_oserror(tmp_path):
    with pytest.raises(IsADirectoryError):
        LatentODERegressor.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        LatentODERegressor.load(tmp_path / "absent.latentode")


def test_bad_device_argument_is_the_callers_error(saved):
    with pytest.raises(ValueError, match="device must be") as info:
        LatentODERegressor.load(saved, device="tpu")
    assert INVALID not in str(info.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_model_loads_on_cpu(df, tmp_path):
    est = LatentODERegressor(**{**TINY, "device": "cuda"}).fit(df)
    est.save(tmp_path / "gpu.latentode")
    assert read_config(tmp_path / "gpu.latentode")["fitted"]["device_"].startswith("cuda")
    loaded = LatentODERegressor.load(tmp_path / "gpu.latentode", device="cpu")
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_allclose(loaded.predict(df)[["x", "v"]], est.predict(df)[["x", "v"]],
                               rtol=1e-4, atol=1e-5)
    on_gpu = LatentODERegressor.load(tmp_path / "gpu.latentode")
    assert on_gpu.device_.type == "cuda"
    pd.testing.assert_frame_equal(on_gpu.predict(df), est.predict(df), check_exact=True)
    cpu_copy = pickle.loads(pickle.dumps(est))  # pickles as a CPU state dict
    assert cpu_copy.device_.type == "cuda"


# ------------------------------------------------------------------------------ fitted state
def test_fit_sets_exactly_the_fitted_state(fitted):
    from latentode._state import FITTED_ATTRIBUTES, FittedState

    assert set(vars(fitted)) - set(fitted.get_params(deep=False)) == set(FITTED_ATTRIBUTES)
    state = FittedState.of(fitted)
    assert state.model is fitted.model_ and state.n_features_in == fitted.n_features_in_ == 4
    assert list(state.feature_names_in) == ["id", "t", "x", "v"]


def test_state_pack_unpack_round_trip(fitted, df):
    from latentode._state import FittedState

    plain, tensors = FittedState.of(fitted).pack()
    assert json.loads(json.dumps(plain)) == plain  # plain JSON types only
    assert all(t.device.type == "cpu" for t in tensors.values())
    # a tensor registered under two names is packed once
    assert len(tensors) < len(fitted.model_.state_dict())
    twin = clone(fitted)
    FittedState.unpack(plain, tensors).attach(twin)
    assert twin.device_ == torch.device("cpu") and not twin.model_.training
    pd.testing.assert_frame_equal(twin.predict(df), fitted.predict(df), check_exact=True)
    assert twin.history_.to_dict() == fitted.history_.to_dict()


def test_io_functions_take_the_class(fitted, df, tmp_path):
    lio.save_estimator(fitted, tmp_path / "a.latentode")
    fitted.save(tmp_path / "b.latentode")
    assert (tmp_path / "a.latentode").read_bytes() == (tmp_path / "b.latentode").read_bytes()
    with pytest.raises(TypeError, match="needs the estimator class"):
        lio.load_estimator(tmp_path / "a.latentode")
    loaded = lio.load_estimator(tmp_path / "a.latentode", cls=LatentODERegressor)
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
    est, state = lio.load_state(tmp_path / "a.latentode", LatentODERegressor)
    assert not hasattr(est, "model_") and est.get_params() == fitted.get_params()
    assert state.target_cols == ["x", "v"]


def _old_pickle_state(est: LatentODERegressor) -> dict:
    """``__getstate__`` as written by latentode 0.1.0, before max_steps, n_jobs and
    decoder_layers existed (the layout spelled out, not produced by the code under test)."""
    state = {k: v for k, v in vars(est).items()
             if k not in ("max_steps", "n_jobs", "decoder_layers")}
    state["model_"] = {
        "__latentode_model__": 1,
        "hparams": {k: v for k, v in est.model_.hparams.items() if k != "decoder_layers"},
        "state_dict": {k: v.detach().clone() for k, v in est.model_.state_dict().items()},
    }
    state["device_"] = "cpu"
    return state


def test_unpickles_estimators_pickled_before_new_params(fitted, df):
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(_old_pickle_state(fitted))  # what pickle.loads does
    assert (old.max_steps, old.n_jobs, old.decoder_layers) == (10_000, None, 0)
    assert old.device_ == torch.device("cpu") and not old.model_.training
    pd.testing.assert_frame_equal(old.predict(df), fitted.predict(df), check_exact=True)
    again = pickle.loads(pickle.dumps(old))
    pd.testing.assert_frame_equal(again.predict(df), fitted.predict(df), check_exact=True)


def test_cuda_estimator_restores_on_cpu_without_cuda(fitted, df, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = fitted.__getstate__()
    state["device_"] = "cuda:0"
    est = LatentODERegressor.__new__(LatentODERegressor)
    with pytest.warns(UserWarning, match="pickled on cuda:0 but CUDA is not available") as rec:
        est.__setstate__(state)
    assert rec[0].filename == __file__  # the warning names the caller
    assert est.device_ == torch.device("cpu")
    pd.testing.assert_frame_equal(est.predict(df), fitted.predict(df), check_exact=True)
    # a file saved on a GPU loads on the CPU, silently
    fitted.save(tmp_path / "cpu.latentode")
    config, weights = _parts(tmp_path / "cpu.latentode")
    config["fitted"]["device_"] = "cuda:0"
    _write_parts(tmp_path / "gpu.latentode", config, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = LatentODERegressor.load(tmp_path / "gpu.latentode")
    assert loaded.device_ == torch.device("cpu")
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
