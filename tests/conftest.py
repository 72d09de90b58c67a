"""Shared test fixtures, built on the library's own generators.

* ``make_oscillators`` / ``oscillators``: long frames of noisy, irregularly sampled damped
  oscillators from :func:`latentode.datasets.make_damped_oscillators`, with the columns the
  tests read (``id`` = ``"s0"``, ``"s1"``, ...; ``t``; position ``x``; velocity ``v``).

The tiny estimator configuration is the constant ``TINY`` of ``tests/_settings.py`` (imported
with ``from _settings import TINY``): module-level dicts and ``parametrize`` lists need it at
import time, which a fixture cannot give, and pytest advises against importing ``conftest``.
Files that need a variant derive it (``{**TINY, "solver": "rk4"}``) instead of copying it.

Session-scoped frames are shared by every test that asks for them: copy before modifying
(``df.copy()``), as the library itself never modifies the caller's frame.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from latentode.datasets import make_damped_oscillators


def oscillator_frame(n_series: int = 12, n_points: int = 20, *, seed: int = 0,
                     missing: float = 0.2, span: float = 6.0,
                     noise: float = 0.02) -> pd.DataFrame:
    """Damped oscillators as a long frame ``id, t, x, v`` (string ids ``"s{i}"``).

    :func:`~latentode.datasets.make_damped_oscillators` with times in ``[0, span]``, each value
    missing with probability ``missing`` (rows with both missing are dropped, every series keeps
    at least one) and ``N(0, noise**2)`` observation noise; ``seed`` gives an identical frame.
    """
    df = make_damped_oscillators(n_series, n_points, time_range=(0.0, span),
                                 missing_fraction=missing, noise_std=noise, random_state=seed)
    df = df.rename(columns={"x0": "x", "x1": "v"})
    df["id"] = "s" + df["id"].astype(str)
    return df


@pytest.fixture(scope="session")
def make_oscillators() -> Callable[..., pd.DataFrame]:
    """``make_oscillators(n_series=12, n_points=20, *, seed=0, missing=0.2, span=6.0)``."""
    return oscillator_frame


@pytest.fixture(scope="session")
def oscillators() -> pd.DataFrame:
    """12 series x 20 candidate times on ``[0, 6]``, 20 % of values missing (seed 0)."""
    return oscillator_frame()
