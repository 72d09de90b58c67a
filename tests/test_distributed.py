"""Distributed (torchrun, gloo, 2 CPU processes) training equals single-process training.

The multi-process runs go through ``python -m torch.distributed.run`` (what users launch as
``torchrun``) with the worker script ``tests/_ddp_worker.py``.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import _ddp_worker as worker
import numpy as np
import pytest
import torch
from _settings import TINY

from latentode import LatentODERegressor
from latentode.data.batch import Batch
from latentode.nn import LatentODE
from latentode.training import fit_model
from latentode.training.distributed import (
    DistributedError,
    InterruptRequests,
    _collective,
    _wait_released,
    get_rank,
    get_world_size,
    is_distributed,
    rank_device,
    shard_slice,
    take_rows,
)

WORKER = Path(__file__).with_name("_ddp_worker.py")
TIME_LIMIT = 60.0  # seconds a failed two-process run may take to end, startup included

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")


def _torchrun(mode: str, out: Path, timeout: float = 180.0,
              device: str = "cpu") -> tuple[int, str, float]:
    """Run the worker on 2 processes; return (exit code, stdout + stderr, seconds)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", LATENTODE_TEST_DEVICE=device,
               PYTHONPATH=os.pathsep.join([str(WORKER.parent), env.get("PYTHONPATH", "")]))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), mode, str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One two-process run of the worker's ``train`` mode (fit_model and estimator)."""
    out = tmp_path_factory.mktemp("ddp")
    code, log, _ = _torchrun("train", out)
    assert code == 0, log
    read = lambda name: json.loads((out / name).read_text())  # noqa: E731
    return {"out": out, "loop": [read(f"loop_rank{r}.json") for r in (0, 1)],
            "est": [read(f"est_rank{r}.json") for r in (0, 1)],
            "mixval": [read(f"mixval_rank{r}.json") for r in (0, 1)],
            "add": [read(f"add_rank{r}.json") for r in (0, 1)],
            "split": [read(f"split_rank{r}.json") for r in (0, 1)]}


# ---------------------------------------------------------------------- helpers, one process
def test_shard_slice_covers_every_row_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            parts = [shard_slice(n, r, world) for r in range(world)]
            rows = [i for p in parts for i in range(n)[p]]
            assert rows == list(range(n))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert shard_slice(5, 0, 2) == slice(0, 3) and shard_slice(1, 1, 2) == slice(1, 1)
    with pytest.raises(ValueError, match="rank"):
        shard_slice(4, 2, 2)


def test_take_rows_cuts_padding_to_its_longest_series():
    b = Batch(torch.arange(12.0).view(3, 4), torch.ones(3, 4, 2), torch.ones(3, 4, 2),
              torch.tensor([4, 2, 1]))
    part = take_rows(b, slice(1, 3))
    assert part.times.shape == (2, 2) and part.values.shape == (2, 2, 2)
    assert part.lengths.tolist() == [2, 1]
    assert torch.equal(part.times, b.times[1:3, :2])


def test_without_process_group_everything_is_single_process():
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    assert rank_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="process group"):
        fit_model(worker.LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1),
                  worker.loader(worker.loop_data(4, 5, 0), (4,)), max_epochs=1, verbose=0,
                  generator=torch.Generator().manual_seed(0), distributed=True)


def test_noise_drawn_for_a_batch_is_what_the_loss_draws():
    """z0_noise from draw_z0_noise reproduces the loss's own draw; rows of it give the rows'
    per-series loss (the basis of sharding)."""
    torch.manual_seed(0)
    model = LatentODE(1, latent_dim=3, rec_dim=4, units=8, n_layers=1, gru_units=4,
                      encoder="gru", method="rk4", step_size=0.25, gradient="backprop")
    batch = worker.loop_data(5, 6, 2)
    batch = Batch(batch.times.float(), batch.values.float(), batch.mask.float(), batch.lengths)
    ref = model.loss(batch, 2, 0.5, generator=torch.Generator().manual_seed(3))
    noise = model.draw_z0_noise(2, 5, torch.Generator().manual_seed(3))
    assert noise.shape == (2, 5, 3)
    out = model.loss(batch, 2, 0.5, z0_noise=noise)
    assert torch.equal(out.loss, ref.loss) and torch.equal(out.nll, ref.nll)
    # the series of two shards add up to the whole batch's unnormalised sums
    parts = [model.loss(take_rows(batch, s), 2, 0.5, z0_noise=noise[:, s])
             for s in (slice(0, 3), slice(3, 5))]
    total = sum(float(p.loss.detach() * p.n_obs) for p in parts)
    assert total == pytest.approx(float(ref.loss.detach() * ref.n_obs), rel=1e-6)
    with pytest.raises(ValueError, match="noise must have shape"):
        model.loss(batch, 2, 0.5, z0_noise=noise[:, :4])


def test_fit_without_process_group_under_a_launcher_warns(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.warns(RuntimeWarning, match="init_from_env"):
        LatentODERegressor(**{**TINY, "max_epochs": 1}).fit(worker.frame(8))


# ---------------------------------------------------------------------- two processes
def test_two_processes_equal_one_process_fit_model(trained):
    """float64 fit_model with dopri5, ODE-RNN, obs_dropout, forecast_split, validation watched
    by val_metric="mse" and a last batch of one series (rank 1 holds none of it): same losses,
    best epoch and weights."""
    single = worker.run_loop(distributed=False)
    rank0, rank1 = trained["loop"]
    assert rank0 == rank1  # bit-identical ranks
    for key in ("train_loss", "val_loss", "train_nll", "train_kl", "train_mse", "val_mse"):
        np.testing.assert_allclose(rank0[key], single[key], rtol=1e-10, err_msg=key)
    # val_mse (watched here) is the point predictions' error, reduced over the ranks
    assert rank0["monitor"] == single["monitor"] == "val_mse"
    assert rank0["best_epoch"] == single["best_epoch"] == int(np.argmin(single["val_mse"]))
    np.testing.assert_allclose(rank0["weights"], single["weights"], rtol=1e-9, atol=1e-12)


def test_two_processes_validate_the_mix_as_one_process(trained):
    """evaluate_loss(forecast_share=0.5): both terms' noise drawn for the global batch, each
    rank scoring its block (none of the last batch on rank 1), the weighted sums reduced."""
    single = worker.run_mix_validation(distributed=False)
    rank0, rank1 = trained["mixval"]
    assert rank0 == rank1
    for key in ("loss", "nll", "mse", "n_obs"):
        assert rank0[key] == pytest.approx(single[key], rel=1e-10), key


def test_two_processes_train_the_added_copies_as_one_process(trained):
    """fit_model(forecast_mode="add"): the copies appended to the global batch, its noise
    drawn for all of its rows and the rows split over the ranks: the same losses and
    weights as one process."""
    single = worker.run_loop(distributed=False, **worker.ADD_TASK)
    rank0, rank1 = trained["add"]
    assert rank0 == rank1
    for key in ("train_loss", "val_loss", "train_mse", "val_mse"):
        np.testing.assert_allclose(rank0[key], single[key], rtol=1e-10, err_msg=key)
    np.testing.assert_allclose(rank0["weights"], single["weights"], rtol=1e-9, atol=1e-12)
    assert single["train_loss"] != worker.run_loop(distributed=False)["train_loss"]


def test_two_processes_train_the_split_readout_as_one_process(trained):
    """The forecast-training candidate's model (readout_sides="split", bounded, and
    forecast_noise) under forecast_mode="add", in float64: the same losses and weights as one
    process. (In float32 an estimator fit of the candidate differs from one process in some
    readout weights, by up to 5e-4: the bounded readout takes the ``torch.minimum`` of the
    two sides' weights, which are tied at the start (the one-sided offsets start at 0) and
    nearly tied for a while after, so rounding decides which side a near-tie's gradient
    trains. One process whose initial weights are scaled by 1 + 2**-23 differs from itself by
    the same amount, and the ``"offset"`` split, without the minimum, matches within the
    estimator test's tolerance: an artefact of float32, not of the distributed path.)"""
    single = worker.run_loop(distributed=False, model_options=worker.SPLIT_MODEL,
                             **worker.ADD_TASK)
    rank0, rank1 = trained["split"]
    assert rank0 == rank1
    for key in ("train_loss", "val_loss", "train_mse", "val_mse"):
        np.testing.assert_allclose(rank0[key], single[key], rtol=1e-10, err_msg=key)
    np.testing.assert_allclose(rank0["weights"], single["weights"], rtol=1e-9, atol=1e-12)
    assert single["train_loss"] != trained["add"][0]["train_loss"]  # the readout trained


def test_two_processes_equal_one_process_estimator(trained):
    """float32 estimator fit (validation, obs_dropout, calibration): the same per-epoch losses,
    weights, calibration and predictions as one process with the same batch_size."""
    single = worker.run_estimator(None)
    rank0, rank1 = trained["est"]
    assert rank0 == rank1  # every rank ends with the same estimator
    assert len(rank0["train_loss"]) == 3
    np.testing.assert_allclose(rank0["train_loss"], single["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(rank0["val_loss"], single["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(rank0["weights"], single["weights"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rank0["spread_scale"], single["spread_scale"], rtol=1e-4)
    np.testing.assert_array_equal(rank0["tail_df"], single["tail_df"])  # rank 0's, shared
    np.testing.assert_allclose(rank0["pred"], single["pred"], rtol=1e-4, atol=1e-5)
    assert np.isfinite(rank0["pred"]).all()


def test_only_rank0_writes_and_shows_progress(trained):
    out = trained["out"]
    assert (out / "model_rank0.latentode").is_file()
    assert not (out / "model_rank1.latentode").exists()  # save() is a no-op on rank 1
    assert "latentode fit" in (out / "stderr_rank0.txt").read_text()
    assert (out / "stderr_rank1.txt").read_text() == ""
    loaded = LatentODERegressor.load(out / "model_rank0.latentode")
    pred = loaded.predict(worker.frame())[["a", "b"]].to_numpy().ravel()
    np.testing.assert_allclose(pred, trained["est"][0]["pred"], rtol=1e-6, atol=1e-7)


def test_exception_on_one_rank_stops_every_rank(tmp_path):
    code, log, seconds = _torchrun("raise", tmp_path)
    assert code != 0
    assert seconds < TIME_LIMIT
    assert "RuntimeError: injected failure on rank 1" in log
    assert f"{DistributedError.__name__}: rank 1 failed" in log  # rank 0 stops with it


def test_dead_rank_stops_every_rank(tmp_path):
    """A rank dying without an exception (killed, os._exit): the others fail fast too."""
    code, log, seconds = _torchrun("exit", tmp_path)
    assert code != 0
    assert seconds < TIME_LIMIT
    assert "rank 1 exits abruptly" in log


def test_a_stop_on_one_rank_stops_every_rank(tmp_path):
    """A callback's stop, a callback's KeyboardInterrupt or Ctrl-C (SIGINT) on one rank only:
    every rank stops after the same epoch (batch) with the same history and weights, and the
    processes exit cleanly after destroy_process_group (no abort at interpreter exit)."""
    code, log, seconds = _torchrun("stop", tmp_path, timeout=TIME_LIMIT + 60)
    assert code == 0, log
    assert "terminate called" not in log
    ranks = [json.loads((tmp_path / f"stop_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the same decisions, histories and weights on every rank
    done = ranks[0]
    expected = {"callback_rank0": (2, "callback"), "callback_rank1": (3, "callback"),
                "keyboard_rank1": (2, "interrupted"), "sigint_rank0": (1, "interrupted")}
    for name, (n_epochs, reason) in expected.items():
        assert (done[name]["n_epochs"], done[name]["stopped_reason"]) == (n_epochs, reason), name
        assert done[name]["sigint_restored"], name  # Ctrl-C handling is Python's again
    # Ctrl-C during epoch 1's second batch: that batch took no step, epoch 0 is kept
    assert done["sigint_rank0"]["best_epoch"] == 0
    assert done["early_stopping"]["stopped_reason"] == "early_stopping"
    assert done["early_stopping"]["n_epochs"] < 8


def test_interrupt_requests_defers_the_first_ctrl_c():
    """Inside InterruptRequests the first SIGINT only sets the flag, a second one raises; the
    default handler is restored afterwards (and a handler of the user's is left alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with InterruptRequests() as requests:
            assert not requests.requested
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs between bytecodes of the main thread
            assert requests.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        calls = []
        signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
        with InterruptRequests() as requests:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert calls == [signal.SIGINT] and not requests.requested
    finally:
        signal.signal(signal.SIGINT, previous)


def test_wait_released_waits_for_the_other_holder():
    """_wait_released returns once another thread dropped its reference to the tensor (what
    gloo's worker does after a collective), and gives up after its timeout."""
    t = torch.ones(3)
    before = t._use_count()
    holder = [t[:2]]  # a view holds a reference to t's C++ object, like a finished work
    assert t._use_count() == before + 1
    start = time.perf_counter()
    assert not _wait_released(t, before, timeout=0.05)
    assert time.perf_counter() - start >= 0.05
    timer = threading.Timer(0.05, holder.clear)
    timer.start()
    assert _wait_released(t, before, timeout=10.0)
    assert t._use_count() == before and holder == []
    timer.join()


def test_collective_drops_the_last_reference_on_the_calling_thread():
    """_collective (every collective of latentode's distributed helpers) returns only after the
    backend's thread let go of the tensor, and that thread never drops the last C++ reference
    besides the tensor's Python object (which needs the GIL: the cause of the SIGABRT at exit).
    A stand-in op hands the tensor to a thread that lets go of it 50 ms after op returned, as
    gloo's worker does (a moment after waking the caller)."""
    t = torch.zeros(4, dtype=torch.float64)
    left_after_release = []

    def op(tensor, src=None):
        assert src == 0  # keyword arguments reach the op
        held = [tensor[:]]  # the worker's C++ reference

        def release():
            held.clear()
            left_after_release.append(tensor._use_count())
        threading.Timer(0.05, release).start()
        tensor += 1.0

    before = t._use_count()
    _collective(op, t, src=0)
    assert left_after_release and left_after_release[0] >= 2  # this thread still held one
    assert t._use_count() == before  # and dropped it
    assert t.tolist() == [1.0] * 4


def test_ranks_with_different_data_refuse_to_train(tmp_path):
    code, log, seconds = _torchrun("mismatch", tmp_path)
    assert code != 0 and seconds < TIME_LIMIT
    assert "the data or the estimator's parameters differs between ranks" in log


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_two_processes_equal_one_process_on_cuda(tmp_path, monkeypatch):
    """Both ranks on cuda:0 (gloo moving CUDA tensors) against one process on cuda:0."""
    code, log, _ = _torchrun("train", tmp_path, device="cuda:0")
    assert code == 0, log
    monkeypatch.setattr(worker, "DEVICE", "cuda:0")
    monkeypatch.setitem(worker.EST_PARAMS, "device", "cuda:0")
    loop = [json.loads((tmp_path / f"loop_rank{r}.json").read_text()) for r in (0, 1)]
    est = [json.loads((tmp_path / f"est_rank{r}.json").read_text()) for r in (0, 1)]
    assert loop[0] == loop[1] and est[0] == est[1] and est[0]["device"] == "cuda:0"
    single_loop, single_est = worker.run_loop(distributed=False), worker.run_estimator(None)
    np.testing.assert_allclose(loop[0]["train_loss"], single_loop["train_loss"], rtol=1e-9)
    np.testing.assert_allclose(loop[0]["weights"], single_loop["weights"], rtol=1e-8,
                               atol=1e-11)
    np.testing.assert_allclose(est[0]["train_loss"], single_est["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(est[0]["val_loss"], single_est["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(est[0]["pred"], single_est["pred"], rtol=1e-4, atol=1e-5)
