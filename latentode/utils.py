"""Device, thread and random-seed helpers shared by the estimator, I/O and demo.

Everything here is deliberately small: the estimator must be repeatable on CPU for a fixed
``random_state`` without touching the caller's global random state, and must leave torch's
thread setting as it found it.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = [
    "resolve_device",
    "draw_seed",
    "make_generator",
    "torch_seeded",
    "available_cpus",
    "resolve_n_jobs",
    "torch_threads",
]

_MAX_SEED = 2**31 - 1


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a user device specification into a :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device or None
        ``"auto"`` (or ``None``) picks the first CUDA device when one is available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the specification cannot be parsed, or names CUDA while CUDA is unavailable.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device type {dev.type!r} is not supported; use 'cpu' or 'cuda'.")
    return dev


def draw_seed(random_state: None | int | np.random.RandomState) -> int:
    """Draw one integer seed from a scikit-learn style ``random_state``.

    An ``int`` always gives the same seed, ``None`` a fresh one from numpy's global generator,
    a :class:`numpy.random.RandomState` advances that generator.

    Raises
    ------
    ValueError
        If ``random_state`` is none of these (or an int numpy cannot seed with), naming
        ``random_state``.
    """
    try:
        rs = check_random_state(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError("random_state must be None, an int in [0, 2**32 - 1] or a "
                         f"numpy.random.RandomState, got {random_state!r}.") from exc
    return int(rs.randint(_MAX_SEED))


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


@contextlib.contextmanager
def torch_seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's global generator(s) inside the block and restore them afterwards.

    Used around module construction (``torch.nn`` initialisers draw from the global generator)
    so that a fixed ``random_state`` gives identical weights without leaking a seed into the
    caller's program.

    Parameters
    ----------
    seed : int
        Seed for the CPU generator (and the CUDA generator of ``device`` when it is a GPU).
    device : torch.device or str
        Device whose generator must also be forked and seeded.

    Yields
    ------
    None
        Inside the block torch's generators are seeded; on exit they are as before.
    """
    dev = torch.device(device)
    cuda_devices: list[int] = []
    if dev.type == "cuda" and torch.cuda.is_available():
        cuda_devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        torch.default_generator.manual_seed(int(seed))
        for index in cuda_devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


def available_cpus() -> int:
    """Number of CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: Any) -> int:
    """Number of torch intra-op threads for a scikit-learn style ``n_jobs``.

    Parameters
    ----------
    n_jobs : int or None
        ``None`` means 1 (as in scikit-learn); a positive int that many threads; ``-1`` every
        available core, ``-2`` all but one, and so on (``n_cpus + 1 + n_jobs``, at least 1).

    Returns
    -------
    int
        Threads, ``>= 1``.

    Raises
    ------
    ValueError
        If ``n_jobs`` is 0 or not an integer (bools are refused).

    Examples
    --------
    >>> resolve_n_jobs(None), resolve_n_jobs(2)
    (1, 2)
    >>> resolve_n_jobs(-1) == available_cpus()
    True
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(
            "n_jobs must be None (one thread), a positive number of threads, or -1 for every "
            f"core (-2 all but one, ...), got {n_jobs!r}."
        )
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, available_cpus() + 1 + int(n_jobs))


@contextlib.contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n_threads)``; restore the caller's setting.

    The previous number of intra-op threads is restored on exit, also when the block raises
    (including ``KeyboardInterrupt``). torch's setting is process-wide, so blocks running at
    the same time in several Python threads see each other's setting.

    Parameters
    ----------
    n_threads : int
        Intra-op threads inside the block, ``>= 1`` (see :func:`resolve_n_jobs`).

    Yields
    ------
    None
        Inside the block torch runs ``n_threads`` intra-op threads.

    Raises
    ------
    ValueError
        If ``n_threads`` is not an integer ``>= 1``.
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or (
            n_threads < 1):
        raise ValueError(f"n_threads must be an integer >= 1, got {n_threads!r}.")
    before = torch.get_num_threads()
    if int(n_threads) != before:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
