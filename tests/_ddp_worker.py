"""Worker script of tests/test_distributed.py, run by torchrun on every rank (and imported).

``python -m torch.distributed.run --nproc_per_node=2 tests/_ddp_worker.py MODE OUT``

* ``train``: a float64 :func:`fit_model` run, a validation of the mixed task
  (:func:`run_mix_validation`), a :func:`fit_model` run of ``forecast_mode="add"``
  (:data:`ADD_TASK`), the same with the split readout and forecast noise (:data:`SPLIT_MODEL`)
  and an estimator fit, each rank writing its results
  to ``OUT/*_rank{r}.json`` and calling ``est.save(OUT/model_rank{r}.latentode)``; its progress
  bar output goes to ``OUT/stderr_rank{r}.txt``.
* ``raise``: rank 1 raises inside ``fit`` (in the model's loss, second batch).
* ``exit``: rank 1's process dies inside ``fit`` (``os._exit``) without raising.
* ``mismatch``: rank 1 calls ``fit`` on other data than rank 0.
* ``stop``: fits in which one rank alone stops (:data:`STOPS`: a callback on rank 0 or on
  rank 1, a callback raising ``KeyboardInterrupt`` on rank 1, SIGINT on rank 0 during a batch)
  and one with early stopping; each rank writes, per fit, its history's length, stop reason,
  losses and weights to ``OUT/stop_rank{r}.json``, then destroys the process group and exits
  normally (the exit used to abort now and then, see ``distributed._collective``).

``LATENTODE_TEST_DEVICE=cuda:0`` trains on that GPU (both ranks on it, so with gloo: NCCL
refuses two ranks on one GPU).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latentode import LatentODERegressor
from latentode.data.batch import Batch
from latentode.nn import LatentODE
from latentode.training import distributed as dist_utils
from latentode.training import evaluate_loss, fit_model

DEVICE = os.environ.get("LATENTODE_TEST_DEVICE", "cpu")
EST_PARAMS = dict(latent_dim=3, rec_dim=6, units=12, n_layers=1, gru_units=12,
                  encoder="odernn", gradient="backprop", max_epochs=3, batch_size=7,
                  validation_fraction=0.25, obs_dropout=0.2, early_stopping=False, verbose=1,
                  random_state=0, device=DEVICE)


#: run_loop's task of forecast_mode="add": copies appended to the global batch, split by rows
ADD_TASK = dict(forecast_share=0.75, forecast_range=(0.3, 0.7), forecast_mode="add")
#: run_loop's model for the forecast-training candidate (with ADD_TASK): the neighbour readout
#: split by sides (bounded, whose one-sided offsets start at 0) and the forecasts' own noise
SPLIT_MODEL = dict(readout="neighbours", readout_sides="split", forecast_noise=True)


def loop_data(n: int, length: int, seed: int) -> Batch:
    """Float64 ragged series with missing values."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(n, length, generator=g, dtype=torch.float64), 1).values
    x = torch.sin(3 * t + torch.rand(n, 1, generator=g, dtype=torch.float64) * 6).unsqueeze(-1)
    m = (torch.rand(n, length, 1, generator=g) > 0.3).double()
    m[:, 0] = 1.0
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    return Batch(t, x * m, m, lengths)


def loader(b: Batch, sizes: tuple[int, ...]):
    def make():
        i = 0
        for s in sizes:
            yield Batch(b.times[i:i + s], b.values[i:i + s], b.mask[i:i + s],
                        b.lengths[i:i + s])
            i += s
    return make


def run_loop(distributed: bool, model_options: dict | None = None, **task) -> dict:
    """fit_model in float64: batches of 4, 4 and 1 series (rank 1 gets nothing of the last);
    ``model_options``: more keyword arguments of the LatentODE (e.g. :data:`SPLIT_MODEL`);
    ``task``: the training task (default ``forecast_split=0.5``)."""
    torch.manual_seed(0)
    model = LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1, gru_units=4,
                      encoder="odernn", method="dopri5", gradient="backprop",
                      **(model_options or {})).double()
    hist = fit_model(model, loader(loop_data(9, 7, 0), (4, 4, 1)),
                     loader(loop_data(5, 7, 1), (3, 2)), max_epochs=3, lr=1e-2, kl_warmup=1,
                     n_traj_samples=2, obs_dropout=0.3,
                     generator=torch.Generator().manual_seed(5), verbose=0, device=DEVICE,
                     distributed=distributed, val_metric="mse",
                     **(task or {"forecast_split": 0.5}))
    return {"best_epoch": hist.best_epoch, "monitor": hist.monitor,
            "train_loss": hist["train_loss"], "val_loss": hist["val_loss"],
            "train_nll": hist["train_nll"], "train_kl": hist["train_kl"],
            "train_mse": hist["train_mse"], "val_mse": hist["val_mse"],
            "weights": torch.cat([p.detach().reshape(-1).cpu()
                                  for p in model.parameters()]).tolist()}


def frame(n_series: int = 30, seed: int = 0) -> pd.DataFrame:
    """Small irregular two-channel data set with missing values."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_series):
        t = np.sort(rng.uniform(0, 10, rng.integers(4, 9)))
        phase = rng.uniform(0, 6)
        a = np.sin(t + phase)
        b = np.cos(0.5 * t + phase)
        b[rng.random(len(t)) < 0.3] = np.nan
        rows.append(pd.DataFrame({"id": i, "t": t, "a": a, "b": b}))
    return pd.concat(rows, ignore_index=True)


def run_estimator(out: Path | None, rank: int = 0) -> dict:
    """Fit the estimator on :func:`frame`, save it, return its figures."""
    df = frame()
    est = LatentODERegressor(**EST_PARAMS).fit(df)
    if out is not None:
        est.save(out / f"model_rank{rank}.latentode")
    pred = est.predict(df)
    return {"train_loss": est.history_["train_loss"], "val_loss": est.history_["val_loss"],
            "spread_scale": est.model_.spread_scale.cpu().tolist(),
            "tail_df": est.model_.gap_spread.tail_df.cpu().tolist(),
            "pred": pred[["a", "b"]].to_numpy().ravel().tolist(),
            "weights": torch.cat([p.detach().reshape(-1).cpu()
                                  for p in est.model_.parameters()]).tolist(),
            "device": str(est.device_)}


#: the ``stop`` mode's fits: name -> (rank that stops, how, epoch or training batch (from 1))
STOPS = {"callback_rank0": (0, "callback", 1), "callback_rank1": (1, "callback", 2),
         "keyboard_rank1": (1, "keyboard", 1), "sigint_rank0": (0, "sigint", 6)}


#: the ``stop`` mode's fits: their stops, histories and weights are compared, not their
#: intervals (the ``train`` mode's estimator checks the calibration across ranks)
STOP_PARAMS = dict(verbose=0, calibrate=False)


def run_stops(rank: int) -> dict:
    """The ``stop`` mode: one fit per entry of :data:`STOPS`, then one with early stopping."""
    results = {}
    for name, (who, how, when) in STOPS.items():
        results[name] = _stop_figures(_fit_stopped_by(rank == who, how, when))
        results[name]["sigint_restored"] = (signal.getsignal(signal.SIGINT)
                                            is signal.default_int_handler)
    est = LatentODERegressor(**{**EST_PARAMS, **STOP_PARAMS, "max_epochs": 8,
                                "early_stopping": True, "patience": 1, "lr": 0.3}).fit(frame())
    results["early_stopping"] = _stop_figures(est)
    return results


def _fit_stopped_by(me: bool, how: str, when: int) -> LatentODERegressor:
    """Fit on :func:`frame`; when ``me``, this rank stops after epoch ``when`` (``how``:
    "callback" returns True, "keyboard" raises KeyboardInterrupt) or sends itself SIGINT in
    its training batch ``when`` (counted from 1; "sigint")."""
    def on_epoch_end(epoch, record, model):
        if me and how != "sigint" and epoch == when:
            if how == "keyboard":
                raise KeyboardInterrupt
            return True
        return None

    original, n_train = LatentODE.loss, [0]

    def loss(self, *args, **kwargs):
        if self.training:
            n_train[0] += 1
            if me and how == "sigint" and n_train[0] == when:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, on this rank only
        return original(self, *args, **kwargs)

    LatentODE.loss = loss
    try:
        return LatentODERegressor(**{**EST_PARAMS, **STOP_PARAMS, "max_epochs": 6,
                                     "callbacks": [on_epoch_end]}).fit(frame())
    finally:
        LatentODE.loss = original


def _stop_figures(est: LatentODERegressor) -> dict:
    return {"n_epochs": est.history_.n_epochs, "stopped_reason": est.history_.stopped_reason,
            "best_epoch": est.history_.best_epoch, "train_loss": est.history_["train_loss"],
            "weights": torch.cat([p.detach().reshape(-1).cpu()
                                  for p in est.model_.parameters()]).tolist()}


def _inject_failure(kind: str) -> None:
    """Make rank 1 fail at its second loss evaluation."""
    original = LatentODE.loss
    calls = {"n": 0}

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            if kind == "raise":
                raise RuntimeError("injected failure on rank 1")
            sys.stderr.write("rank 1 exits abruptly\n")
            sys.stderr.flush()
            os._exit(3)
        return original(self, *args, **kwargs)

    LatentODE.loss = loss


def run_mix_validation(distributed: bool) -> dict:
    """evaluate_loss of the mixed task (float64; batches of 3 and 1 series, rank 1 holding
    none of the second)."""
    torch.manual_seed(1)
    model = LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1, gru_units=4,
                      encoder="odernn", method="dopri5", gradient="backprop").double().to(DEVICE)
    return evaluate_loss(model, loader(loop_data(4, 7, 1), (3, 1))(), 2, device=DEVICE,
                         generator=torch.Generator().manual_seed(2), distributed=distributed,
                         forecast_share=0.5, forecast_range=(0.3, 0.7))


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    backend = "gloo" if DEVICE.startswith("cuda") else None
    assert dist_utils.init_from_env(backend), "run me with torchrun and at least 2 processes"
    rank = dist_utils.get_rank()
    if mode == "train":
        (out / f"loop_rank{rank}.json").write_text(json.dumps(run_loop(True)))
        (out / f"mixval_rank{rank}.json").write_text(json.dumps(run_mix_validation(True)))
        (out / f"add_rank{rank}.json").write_text(json.dumps(run_loop(True, **ADD_TASK)))
        (out / f"split_rank{rank}.json").write_text(
            json.dumps(run_loop(True, model_options=SPLIT_MODEL, **ADD_TASK)))
        with open(out / f"stderr_rank{rank}.txt", "w") as err:
            sys.stderr = err  # tqdm writes its bar to sys.stderr
            try:
                result = run_estimator(out, rank)
            finally:
                sys.stderr = sys.__stderr__
        (out / f"est_rank{rank}.json").write_text(json.dumps(result))
    elif mode == "stop":  # one rank alone stops; every rank must stop with it, and exit cleanly
        (out / f"stop_rank{rank}.json").write_text(json.dumps(run_stops(rank)))
    elif mode == "mismatch":  # rank 1 reads other data
        LatentODERegressor(**{**EST_PARAMS, "verbose": 0}).fit(frame(seed=rank))
    else:
        if rank == 1:
            _inject_failure(mode)
        LatentODERegressor(**{**EST_PARAMS, "verbose": 0, "max_epochs": 50}).fit(frame())
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
