"""Saving / loading fitted estimators (:mod:`latentode.io`)."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY
from sklearn.exceptions import NotFittedError

from latentode import LatentODERegressor
from latentode.io import FORMAT_VERSION, read_config


def oscillators(n_series: int = 6, n_points: int = 15, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.sort(rng.uniform(0.0, 5.0, n_points))
        w, p = rng.uniform(0.8, 1.6), rng.uniform(0, 2 * np.pi)
        v = np.exp(-0.1 * t) * np.sin(w * t + p)
        v[rng.random(n_points) < 0.3] = np.nan
        x = np.exp(-0.1 * t) * np.cos(w * t + p)
        frames.append(pd.DataFrame({"id": f"s{i}", "t": t, "x": x, "v": v}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return oscillators()


@pytest.fixture(scope="module")
def fitted(df) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(df)


def test_save_load_identical(fitted, df, tmp_path):
    path = tmp_path / "sub" / "model.lode"
    fitted.save(path)
    loaded = LatentODERegressor.load(path)
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
    pd.testing.assert_frame_equal(loaded.extrapolate(df, horizon=1.5, n_points=4),
                                  fitted.extrapolate(df, horizon=1.5, n_points=4),
                                  check_exact=True)
    assert loaded.score(df) == fitted.score(df)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.target_cols_ == fitted.target_cols_
    assert loaded.time_col_ == "t" and loaded.id_col_ == "id"
    assert list(loaded.feature_names_in_) == list(fitted.feature_names_in_)
    assert loaded.n_features_in_ == fitted.n_features_in_
    assert loaded.history_.to_dict() == fitted.history_.to_dict()
    assert loaded.device_ == torch.device("cpu")
    assert not loaded.model_.training


def test_archive_layout_is_json_plus_state_dict(fitted, tmp_path):
    path = tmp_path / "model.lode"
    fitted.save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "weights.pt"]
        config = json.loads(archive.read("config.json"))
        state = torch.load(io.BytesIO(archive.read("weights.pt")), weights_only=True)
    assert config["format_version"] == FORMAT_VERSION
    assert config["class"] == "LatentODERegressor"
    assert config["params"]["latent_dim"] == 3
    assert {"time_encoder", "scaler", "history", "model_hparams"} <= set(config)
    assert set(state) == set(fitted.model_.state_dict())
    assert read_config(path)["fitted"]["target_cols_"] == ["x", "v"]


def test_load_never_unpickles_objects(fitted, tmp_path):
    """A weights member holding an arbitrary pickled object is refused, not executed."""
    path = tmp_path / "evil.lode"
    fitted.save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json")
    buffer = io.BytesIO()
    torch.save({"payload": _Payload()}, buffer)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("weights.pt", buffer.getvalue())
    _Payload.called = False
    with pytest.raises(pickle.UnpicklingError):
        LatentODERegressor.load(path)
    assert not _Payload.called


class _Payload:
    called = False

    def __reduce__(self):
        return (_Payload._trigger, ())

    @staticmethod
    def _trigger():
        _Payload.called = True
        return None


def test_unsupported_format_version(fitted, tmp_path):
    path = tmp_path / "future.lode"
    fitted.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("weights.pt")
    config["format_version"] = FORMAT_VERSION + 1
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("weights.pt", weights)
    with pytest.raises(ValueError, match="format_version"):
        LatentODERegressor.load(path)


def test_not_an_archive(tmp_path):
    path = tmp_path / "junk.lode"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a saved latentode estimator"):
        LatentODERegressor.load(path)


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        LatentODERegressor(**TINY).save(tmp_path / "m.lode")


def test_callable_param_cannot_be_saved(df, tmp_path):
    est = LatentODERegressor(**{**TINY, "kl_warmup": lambda epoch, step: 1.0}).fit(df)
    with pytest.raises(ValueError, match="kl_warmup"):
        est.save(tmp_path / "m.lode")
    assert not (tmp_path / "m.lode").exists()


def test_datetime_model_round_trip(df, tmp_path):
    dt = df.copy()
    dt["t"] = pd.Timestamp("2023-05-01 12:00") + pd.to_timedelta(dt["t"], unit="D")
    est = LatentODERegressor(**TINY).fit(dt)
    est.save(tmp_path / "dt.lode")
    loaded = LatentODERegressor.load(tmp_path / "dt.lode", device="cpu")
    a = est.extrapolate(dt, horizon=pd.Timedelta(days=1), n_points=3)
    b = loaded.extrapolate(dt, horizon=pd.Timedelta(days=1), n_points=3)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert pd.api.types.is_datetime64_any_dtype(b["t"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_model_loads_on_cpu(df, tmp_path):
    est = LatentODERegressor(**{**TINY, "device": "cuda"}).fit(df)
    est.save(tmp_path / "gpu.lode")
    loaded = LatentODERegressor.load(tmp_path / "gpu.lode", device="cpu")
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_allclose(loaded.predict(df)[["x", "v"]], est.predict(df)[["x", "v"]],
                               rtol=1e-4, atol=1e-5)
    cpu_copy = pickle.loads(pickle.dumps(est))  # pickles as a CPU state dict
    assert cpu_copy.device_.type == "cuda"
