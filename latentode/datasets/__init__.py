"""Data sets as long-format DataFrames (``id``, ``t``, one column per channel, NaN = unobserved).

Real data
---------
load_physionet2012
    The PhysioNet/CinC Challenge 2012 ICU archive (8,000 stays, 41 parameters) from a path.
load_physionet_sample
    300 stays of it shipped with the package (works offline).
PHYSIONET_PARAMETERS, physionet_minmax, scale_physionet, paper_mse
    The paper's 41 parameters, its per-feature scaling and its MSE metric.

Synthetic data
--------------
make_periodic
    Noisy irregularly sampled sinusoids (the Latent ODE paper's toy data).
make_damped_oscillators, damped_oscillator_matrix
    A damped harmonic oscillator with known linear dynamics.
make_oscillator_classes
    Damped oscillators of a few frequencies labelled by frequency (a classification task).
make_ornstein_uhlenbeck
    Mean-reverting stochastic paths (random walks with ``theta=0``), exactly simulated.
make_spirals
    The Neural ODE paper's noisy 2-D spirals, observed irregularly, with their noise-free future.
"""

from .physionet import (
    PHYSIONET_DESCRIPTORS,
    PHYSIONET_OUTCOMES,
    PHYSIONET_PARAMETERS,
    load_physionet2012,
    load_physionet_sample,
    paper_mse,
    physionet_minmax,
    scale_physionet,
)
from .spirals import Spirals, make_spirals
from .synthetic import (
    damped_oscillator_matrix,
    make_damped_oscillators,
    make_ornstein_uhlenbeck,
    make_oscillator_classes,
    make_periodic,
)

__all__ = [
    "PHYSIONET_DESCRIPTORS",
    "PHYSIONET_OUTCOMES",
    "PHYSIONET_PARAMETERS",
    "load_physionet2012",
    "load_physionet_sample",
    "paper_mse",
    "physionet_minmax",
    "scale_physionet",
    "make_periodic",
    "make_damped_oscillators",
    "damped_oscillator_matrix",
    "make_oscillator_classes",
    "make_ornstein_uhlenbeck",
    "make_spirals",
    "Spirals",
]
