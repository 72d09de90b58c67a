"""Helpers for training one model across processes with :mod:`torch.distributed` (torchrun).

Data-parallel training in latentode does not wrap the model in
:class:`~torch.nn.parallel.DistributedDataParallel`. Every rank reads the same data, forms the
same *global* mini-batches (same seeds), draws all the batch's randomness for the global batch
and keeps a contiguous block of its series (:func:`shard_slice`); after the backward pass one
SUM all-reduce (:func:`all_reduce_checked`) of a flat buffer carries every gradient together with
the batch's loss sums and error flags, so every rank takes the same optimiser step and reaches
the same decisions (skipped batches, early stopping, best weights). With world size ``W`` and a
global batch of ``B`` series the result equals single-process training with batch ``B`` up to
floating-point summation order.

Launch with ``torchrun`` and initialise the process group before fitting, e.g. with
:func:`init_from_env`.

Every collective of this module returns only once the backend has let go of the tensors it was
given (:func:`_collective`): gloo runs a collective on a worker thread, which wakes the caller
and drops its references to the finished work's tensors a moment later. Dropping the last C++
reference besides the tensor's Python object touches that object, which needs the GIL; when
the worker did so while the process was already exiting (Python finalising), Python ended the
thread inside the work's destructor and the process aborted with "terminate called without an
active exception" (SIGABRT), after training had finished. A fit that ends just before the
script exits (a stop on one rank, a script without ``destroy_process_group``; torch keeps the
group alive after ``destroy_process_group`` once ``torch.distributed.nn`` was imported after
``init_process_group``, as the first optimiser does through ``torch._dynamo``) was exposed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import FrameType

import torch
import torch.distributed as dist
from torch import nn

from latentode.batch import Batch

__all__ = [
    "DistributedError",
    "init_from_env",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "local_rank",
    "rank_device",
    "shard_slice",
    "take_rows",
    "all_reduce_checked",
    "broadcast_module",
    "broadcast_int",
    "any_rank",
    "from_rank0",
    "check_same",
    "Interrupted",
    "InterruptRequests",
]

#: how long a collective waits for the other ranks before failing (``init_from_env`` default)
DEFAULT_TIMEOUT = timedelta(minutes=10)
#: seconds a collective waits at most for the backend to drop its references to the tensors
RELEASE_TIMEOUT = 5.0


class DistributedError(RuntimeError):
    """Raised on every rank when another rank failed, or when the ranks disagree."""


class Interrupted(KeyboardInterrupt):
    """Raised on every rank at the same point of distributed training when one rank was
    interrupted (Ctrl-C, or a callback raising :class:`KeyboardInterrupt`), so that every rank
    stops cleanly after the same batch (see :class:`InterruptRequests`)."""


class InterruptRequests:
    """Context manager that turns Ctrl-C (SIGINT) into a request the ranks can agree on.

    Inside the block the first SIGINT only sets :attr:`requested`; the training loop sends the
    flag with its next all-reduce, and every rank stops after that batch. A second SIGINT
    raises :class:`KeyboardInterrupt` at once (which the other ranks see as a lost peer at
    their next collective). The handler is installed only in the main thread and only when
    SIGINT has Python's default handler (a handler of the user's is left alone); the previous
    handler is restored on exit.

    Attributes
    ----------
    requested : bool
        Whether SIGINT arrived inside the block (may also be set by the caller).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: object = None

    def __enter__(self) -> InterruptRequests:
        self.requested = False
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._previous = None


def _collective(op: Callable[..., object], tensor: torch.Tensor, **kwargs: object) -> None:
    """Run the synchronous collective ``op(tensor, **kwargs)``; for a CPU tensor (gloo), return
    only once the backend holds no reference to ``tensor`` any more, and make sure that the
    backend's thread never needs the GIL to let go of it.

    Gloo's worker thread wakes the caller before it drops the finished work, which holds
    ``tensor``. Releasing a C++ reference that leaves a tensor's Python object as its only
    owner touches that object, so it needs the GIL; when gloo's thread does it while Python
    finalises, Python ends the thread inside the work's destructor and the process aborts (see
    the module's docstring). So this thread holds a C++ reference of its own (a DLPack capsule)
    during the collective, waits for the worker to drop its references (microseconds; at most
    :data:`RELEASE_TIMEOUT` seconds, after which the capsule is kept for good) and drops its
    own last. CUDA tensors (NCCL, whose watchdog thread releases works later) are not waited
    for.
    """
    if tensor.device.type != "cpu":
        op(tensor, **kwargs)
        return
    keep = _hold(tensor)
    count = _use_count(tensor)
    op(tensor, **kwargs)
    if not _wait_released(tensor, count):
        _STUCK.append(keep)  # gloo's thread must not be the one that drops the last but one
    del keep  # with the GIL, on this thread


#: references :func:`_collective` keeps when a backend did not release a tensor in time
_STUCK: list[object] = []


def _hold(tensor: torch.Tensor) -> object:
    """A C++ reference to ``tensor`` (a DLPack capsule; None for a tensor that requires grad,
    which DLPack cannot export)."""
    if tensor.requires_grad:
        return None
    try:
        return tensor.__dlpack__()
    except (RuntimeError, TypeError, BufferError):
        return None


def _use_count(tensor: torch.Tensor) -> int:
    """References to ``tensor``'s C++ object (0 where torch does not tell)."""
    count = getattr(tensor, "_use_count", None)
    return int(count()) if count is not None else 0


def _wait_released(tensor: torch.Tensor, count: int, timeout: float = RELEASE_TIMEOUT) -> bool:
    """Wait until at most ``count`` references to ``tensor``'s C++ object remain (another
    thread, e.g. a collective backend's worker, letting go of it).

    Parameters
    ----------
    tensor : torch.Tensor
        The tensor (kept alive by the caller).
    count : int
        References expected once the other holders are done (the count before handing the
        tensor over).
    timeout : float
        Give up after this many seconds.

    Returns
    -------
    bool
        True once released (at once when torch does not report reference counts), False when
        ``timeout`` passed first.
    """
    if _use_count(tensor) <= count:
        return True
    deadline = time.monotonic() + timeout
    delay = 1e-5
    while _use_count(tensor) > count:
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)  # let the worker thread run (a busy loop would compete for a core)
        delay = min(2.0 * delay, 1e-3)
    return True


def is_distributed() -> bool:
    """True when a default process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes of the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """Rank of this process on its node: ``LOCAL_RANK`` (set by torchrun), else the global rank
    modulo the number of visible GPUs (else the global rank)."""
    env = os.environ.get("LOCAL_RANK")
    if env is not None:
        return int(env)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return get_rank() % n_gpus if n_gpus else get_rank()


def rank_device(device: torch.device | str | None) -> torch.device:
    """The device this rank trains on for a user's ``device`` choice.

    Under a multi-process group, ``"auto"`` (or None) and a plain ``"cuda"`` mean this rank's
    GPU, ``cuda:LOCAL_RANK``, when CUDA is available (else the CPU); ``"cpu"`` and an explicit
    ``"cuda:N"`` are kept. Without a process group it returns ``device`` unchanged (``"auto"``:
    the first GPU, else the CPU).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return _local_gpu() if is_distributed() else torch.device("cuda")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and is_distributed():
        return _local_gpu()
    return dev


def _local_gpu() -> torch.device:
    index, count = local_rank(), torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"this process has LOCAL_RANK={index} but only {count} GPU(s) are visible: start "
            "at most one process per GPU on each node (torchrun --nproc_per_node), or pass "
            "device='cpu'."
        )
    return torch.device("cuda", index)


def init_from_env(
    backend: str | None = None, timeout: timedelta = DEFAULT_TIMEOUT
) -> bool:
    """Initialise the default process group from torchrun's environment variables.

    Does nothing (and returns False) when ``WORLD_SIZE`` is unset or 1; returns True when a
    group with more than one process is (now, or already was) initialised. Call it once at the
    top of a script launched with ``torchrun``; every rank then runs the same script and
    :meth:`latentode.LatentODERegressor.fit` trains one model across the ranks.

    Parameters
    ----------
    backend : str, optional
        Default: ``"cpu:gloo,cuda:nccl"`` when CUDA is available (NCCL for GPU tensors, gloo for
        CPU ones), else ``"gloo"``.
    timeout : datetime.timedelta
        How long a collective waits for the other ranks (a rank that died without the others
        noticing makes them fail after this time at the latest; torchrun normally stops them
        sooner).

    Returns
    -------
    bool
        Whether training will be distributed (:func:`is_distributed`).

    Notes
    -----
    With CUDA, the current device of each process is set to ``cuda:LOCAL_RANK`` (when that GPU
    exists).
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return is_distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} is not set; launch "
            "the script with torchrun (python -m torch.distributed.run)."
        )
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=timeout)
    return is_distributed()


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Contiguous block of ``range(n)`` that ``rank`` owns: sizes differ by at most one.

    The first ``n % world_size`` ranks get one element more; a rank gets an empty block when
    ``n < world_size``.

    Examples
    --------
    >>> [shard_slice(5, r, 2) for r in range(2)]
    [slice(0, 3, None), slice(3, 5, None)]
    >>> shard_slice(1, 1, 2)
    slice(1, 1, None)
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}.")
    size, extra = divmod(int(n), world_size)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (1 if rank < extra else 0))


def take_rows(batch: Batch, rows: slice) -> Batch:
    """The series ``rows`` of ``batch``, cut to the longest of them (padding never matters)."""
    lengths = batch.lengths[rows]
    width = int(lengths.max()) if len(lengths) else 1
    return Batch(batch.times[rows, :width], batch.values[rows, :width],
                 batch.mask[rows, :width], lengths, **batch.per_series(rows))


def all_reduce_checked(
    buf: torch.Tensor, error: BaseException | None = None, header: Sequence[float] = ()
) -> tuple[torch.Tensor, list[float]]:
    """SUM-all-reduce the 1-d ``buf`` (and a few ``header`` numbers); raise on every rank if any
    rank failed.

    Each rank adds a flag saying whether it hit ``error``, so the reduction doubles as the
    error protocol: every rank leaves this call either with the same reduced values or with an
    exception (the failing rank re-raises its own error, the others raise
    :class:`DistributedError` naming it). A rank that fails must still call this function (with
    a buffer of the usual size, e.g. zeros).

    Parameters
    ----------
    buf : torch.Tensor
        1-d floating tensor of the same length on every rank.
    error : BaseException, optional
        This rank's failure, if any.
    header : sequence of float
        Numbers summed alongside and returned as Python floats (read with the error flags in
        one device-to-host copy).

    Returns
    -------
    reduced : torch.Tensor
        The element-wise sum of ``buf`` over ranks (a new tensor, on ``buf``'s device).
    header : list of float
        The sums of ``header``.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    n, k = buf.numel(), len(header)
    tail = torch.zeros(k + world + 1, dtype=torch.float64)
    if k:
        tail[:k] = torch.tensor([float(h) for h in header], dtype=torch.float64)
    tail[k + rank] = 1.0 if error is not None else 0.0
    tail[k + world] = float(n)  # ranks with buffers of different sizes would garble the sums
    full = torch.cat([buf.reshape(-1), tail.to(device=buf.device, dtype=buf.dtype)])
    _collective(dist.all_reduce, full)
    values = full[n:].tolist()
    failed = [r for r in range(world) if values[k + r] > 0]
    if failed:
        if error is not None:
            raise error
        raise DistributedError(
            f"rank{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))} failed during "
            f"distributed training (rank {rank} stops too); see the failing rank's traceback."
        )
    if values[k + world] != world * n:
        raise DistributedError("the ranks reduced buffers of different sizes; every rank must "
                               "train the same model on the same data.")
    return full[:n], values[:k]


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (in place).

    One broadcast per dtype (all the floating tensors of a model in one go); exact.
    """
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in module.state_dict().values():
        if t.numel():
            groups.setdefault((t.dtype, t.device), []).append(t)
    for tensors in groups.values():
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        _collective(dist.broadcast, flat, src=src)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def broadcast_int(value: int, device: torch.device | str = "cpu", src: int = 0) -> int:
    """Rank ``src``'s ``value`` on every rank (e.g. a seed drawn from fresh entropy)."""
    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    _collective(dist.broadcast, t, src=src)
    return int(t.item())


def any_rank(*flags: bool, device: torch.device | str = "cpu") -> list[bool]:
    """For each of ``flags``, whether it is True on at least one rank (the same answer on every
    rank, e.g. whether to stop training); one all-reduce."""
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int64, device=device)
    _collective(dist.all_reduce, t)
    return [bool(v) for v in t.tolist()]


@torch.no_grad()
def from_rank0(fn: Callable[[], object], result: torch.Tensor, *more: torch.Tensor) -> None:
    """Run ``fn`` on rank 0 only and copy the floating tensors ``result, *more`` it fills to
    every rank.

    ``fn`` writes its answer into ``result`` (and ``more``) in place (e.g. ``calibrate_spread``
    filling the model's ``spread_scale`` and ``gap_spread`` buffers). An exception in ``fn`` is
    raised on rank 0 and reported as :class:`DistributedError` on the others, so no rank waits
    for an answer that never comes. The tensors travel in one all-reduce (in ``result``'s
    dtype and device).
    """
    error: BaseException | None = None
    if get_rank() == 0:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - re-raised on rank 0, reported on the others
            error = err
    tensors = (result, *more)
    flat = torch.cat([t.detach().reshape(-1).to(result) for t in tensors])
    mine = flat if get_rank() == 0 else torch.zeros_like(flat)
    total, _ = all_reduce_checked(mine.clone(), error)
    lo = 0
    for t in tensors:
        t.copy_(total[lo:lo + t.numel()].view_as(t))
        lo += t.numel()


def check_same(values: Sequence[float] | torch.Tensor, what: str,
               device: torch.device | str = "cpu") -> None:
    """Raise :class:`DistributedError` on every rank unless every rank passed the same
    ``values`` (a fingerprint of its data, settings or random state), naming ``what``.

    ``values`` must have the same length on every rank.
    """
    mine = torch.as_tensor(values).detach().to(device=device, dtype=torch.float64).reshape(-1)
    ref = mine.clone()
    _collective(dist.broadcast, ref, src=0)
    differs = torch.tensor([0.0 if torch.equal(mine, ref) else 1.0], dtype=torch.float64,
                           device=device)
    _collective(dist.all_reduce, differs)
    n = int(differs.item())
    if n:
        raise DistributedError(
            f"{what} differs between ranks ({n} rank(s) differ from rank 0); every rank must "
            "call fit with the same data, parameters and seeds."
        )
