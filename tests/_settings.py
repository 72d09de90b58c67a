"""Shared test settings (importable because pytest puts ``tests/`` on ``sys.path``)."""

#: a tiny, fast estimator configuration for contract tests (not for accuracy)
TINY = dict(latent_dim=3, rec_dim=6, units=12, n_layers=1, gru_units=12, encoder="gru",
            gradient="backprop", max_epochs=2, batch_size=8, verbose=0, random_state=0,
            device="cpu")


def batch_loader(batch, size=4):
    """A :func:`latentode.training.fit_model` loader: ``batch`` cut into batches of ``size``."""
    from latentode.batch import Batch

    def make():
        for i in range(0, batch.batch_size, size):
            yield Batch(batch.times[i:i + size], batch.values[i:i + size],
                        batch.mask[i:i + size], batch.lengths[i:i + size])
    return make


def fit_loss_calls(model, data, **fit_kwargs):
    """Fit ``model`` on ``data`` (training and validation, :func:`batch_loader`) with
    :func:`latentode.training.fit_model` and ``fit_kwargs``, recording every ``model.loss``
    call; return ``(train, val)``: the ``(cond.lengths, target)`` of each call in training
    and in validation mode."""
    from latentode.training import fit_model

    calls = []
    loss = model.loss

    def spy(cond, *args, target=None, **kwargs):
        calls.append((model.training, cond.lengths.clone(), target))
        return loss(cond, *args, target=target, **kwargs)

    model.loss = spy
    fit_model(model, batch_loader(data), batch_loader(data), **fit_kwargs)
    train = [(n, tgt) for training, n, tgt in calls if training]
    val = [(n, tgt) for training, n, tgt in calls if not training]
    return train, val


def ragged_batch(n=6, length=9, c=2, seed=0, min_length=1):
    """A float64 :class:`latentode.batch.Batch` of ``n`` series with random lengths in
    ``[min_length, length]`` (the first one full), sorted random times, about 70 % of the
    values observed and the first value of channel 0 always; ``seed`` gives the same batch."""
    import torch

    from latentode.batch import Batch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_length, length + 1, (n,), generator=g)
    lengths[0] = length
    times = torch.sort(torch.rand(n, length, generator=g, dtype=torch.float64), 1).values
    valid = torch.arange(length) < lengths[:, None]
    times = torch.where(valid, times, times.gather(1, (lengths - 1)[:, None]))
    mask = (torch.rand(n, length, c, generator=g) < 0.7).double() * valid.unsqueeze(-1)
    mask[:, 0, 0] = 1.0
    values = torch.randn(n, length, c, generator=g, dtype=torch.float64) * mask
    return Batch(times, values, mask, lengths)


def tiny_latent_ode():
    """A seeded one-channel :class:`latentode.nn.LatentODE` small enough for loop tests."""
    import torch

    from latentode.nn import LatentODE

    torch.manual_seed(0)
    return LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1, gru_units=4,
                     encoder="gru", method="rk4", step_size=0.25, gradient="backprop")


def load_script(path, name=None):
    """Import a script that is not a package module (``benchmarks/*.py``) by its path.

    Registered in ``sys.modules`` under ``name`` (default ``<stem>_under_test``), which
    dataclasses and pickling of its objects need.
    """
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(path)
    name = name or f"{path.stem}_under_test"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module



def as_saved_before(est, name, tmp_path, hparam=False):
    """``est`` as a file and as a pickle written before its parameter ``name`` existed.

    Returns ``(from_file, from_pickle)``: ``est`` saved to ``tmp_path``, the parameter removed
    from the file's settings (and from the network's hyper-parameters with ``hparam=True``) and
    loaded; and the same removal from its pickled state, unpickled.
    """
    cls = type(est)
    est.save(tmp_path / "new.latentode")

    def edit(config):
        config["params"].pop(name)
        if hparam:
            config["model_hparams"].pop(name)

    rewrite_saved_config(tmp_path / "new.latentode", tmp_path / "old.latentode", edit)
    from_file = cls.load(tmp_path / "old.latentode")
    state = est.__getstate__()
    del state[name]
    if hparam:
        state["model_"]["hparams"].pop(name)
    from_pickle = cls.__new__(cls)
    from_pickle.__setstate__(state)
    return from_file, from_pickle

#: the repository's ``benchmarks/`` folder
BENCHMARKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"


def rewrite_saved_config(src, dst, edit) -> None:
    """Copy the saved estimator file ``src`` to ``dst``, passing its JSON settings through
    ``edit(config)`` (in place), e.g. to write a file from before a parameter existed."""
    import json
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".json"):
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(info, data)


def fit_uncalibrated(monkeypatch) -> list:
    """Make every estimator's ``fit`` skip the interval calibration for the rest of the test
    (the regressor's and the classifier's ``fit`` share ``LatentODERegressor._fit``; the
    estimator's own ``calibrate`` is restored after each fit). For tests of point predictions,
    which the calibration leaves unchanged. Returns the list that gets one entry per fit."""
    from latentode import LatentODERegressor

    fits = []
    fit = LatentODERegressor._fit

    def uncalibrated_fit(self, *args, **kwargs):
        fits.append(1)
        requested = self.calibrate
        self.calibrate = False
        try:
            return fit(self, *args, **kwargs)
        finally:
            self.calibrate = requested

    monkeypatch.setattr(LatentODERegressor, "_fit", uncalibrated_fit)
    return fits
