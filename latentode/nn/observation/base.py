"""The observation-model interface: what a likelihood of the observed values must provide.

An :class:`ObservationModel` is the distribution of an observed value ``x_c(t)`` given the decoded
location ``m_c(t) = decoder(z(t))_c``: a location-scale family ``x = m + scale_c * e`` with ``e``
drawn from a standard member of the family (possibly with per-channel shape parameters, e.g.
the degrees of freedom of a Student-t). It owns, in one place,

* its parameters (the per-channel scale, learned or fixed, and any shape parameter), as an
  :class:`torch.nn.Module` whose :meth:`~ObservationModel.forward` returns the ``(C,)`` scale;
* the masked log-density of observed entries, :meth:`~ObservationModel.log_prob` (the data
  term of the ELBO, :meth:`latentode.nn.LatentODE.loss`);
* the calibration hook of :func:`latentode.training.calibrate_spread`: the standard family's
  CDF and log-density in torch (:meth:`~ObservationModel.standard_cdf`,
  :meth:`~ObservationModel.standard_log_pdf`, and :meth:`~ObservationModel.calibrated_cdf`,
  :meth:`~ObservationModel.calibrated_log_pdf` with calibrated tails); a calibration factor
  multiplies the scale, calibrated tails (:mod:`.tails`) replace the standard family by a
  Student-t where the errors call for heavier tails;
* the predictive distribution in numpy, for the estimator: its per-channel parameters
  (:meth:`~ObservationModel.predictive`), rescaled to the user's units
  (:meth:`~ObservationModel.to_user_units`), quantiles of the mixture over posterior samples of
  ``z_t0`` (:meth:`~ObservationModel.quantiles`) and draws (:meth:`~ObservationModel.sample`).

A new likelihood is one file defining a subclass (the torch log-density, the standard family in
torch and numpy, the draw), an entry in :data:`latentode.nn.registry.OBSERVATION_MODELS`, and its
tests; the estimator's ``likelihood`` parameter accepts every registered name.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentode._mixture import location_scale_mixture_quantiles

from .tails import (
    draw_with_tails,
    t_cdf,
    t_cdf_torch,
    t_log_pdf,
    t_pdf,
    t_ppf,
    with_tails,
    with_tails_torch,
)

__all__ = ["ObservationModel", "Noise"]

Noise = dict[str, np.ndarray]
"""Predictive noise parameters per channel: ``"scale"`` ``(C,)`` and any shape parameters;
optionally ``"tail_df"``, the calibrated tails (:mod:`.tails`) broadcast like ``"scale"``."""


class ObservationModel(nn.Module, ABC):
    """Distribution of the observed values given their decoded locations (see the module doc).

    Subclasses set :attr:`name` (their key in the registry) and :attr:`shape_names`, call
    :meth:`_init_scale` (or override :meth:`forward`), and implement :meth:`from_config`,
    :meth:`log_prob`, :meth:`standard_cdf`,
    :meth:`standard_log_pdf`, :meth:`shape_params` (when :attr:`shape_names` is not empty) and
    the numpy standard family :meth:`np_cdf`, :meth:`np_pdf`, :meth:`np_ppf`,
    :meth:`np_standard_draw`. Shape parameters enter the numpy functions as keyword arguments
    named by :attr:`shape_names`, broadcast against ``u``.
    """

    #: Registry key (the estimator's ``likelihood``).
    name: ClassVar[str]
    #: Names of the per-channel shape parameters of the standard family (in :class:`Noise`).
    shape_names: ClassVar[tuple[str, ...]] = ()
    #: Whether the scale is trained (False: fixed by ``obs_std``).
    learned: bool
    raw: nn.Parameter | None
    fixed: torch.Tensor | None

    @classmethod
    @abstractmethod
    def from_config(
        cls, n_channels: int, *, obs_std: str | float, obs_std_init: float,
        obs_std_floor: float, obs_df: str | float,
    ) -> ObservationModel:
        """Build from :class:`~latentode.nn.LatentODE`'s options (each takes what it uses)."""

    # ------------------------------------------------------------------ parameters (torch)
    def _init_scale(
        self, n_channels: int, obs_std: str | float, init: float, floor: float
    ) -> None:
        """Create the per-channel scale: learned (``"learned"``) or fixed (a positive float).

        Learned: ``scale = softplus(raw) + floor`` with ``raw`` a parameter initialised so that
        ``scale == init``; fixed: a ``fixed`` buffer. (The state-dict keys ``raw`` / ``fixed``
        are those of saved files.)
        """
        self.floor = float(floor)
        if isinstance(obs_std, str):
            if obs_std != "learned":
                raise ValueError(f"obs_std must be 'learned' or a positive float, got {obs_std!r}.")
            if not init > floor:
                raise ValueError(f"init ({init}) must exceed floor ({floor}).")
            raw = math.log(math.expm1(init - floor))  # inverse softplus
            self.raw = nn.Parameter(torch.full((n_channels,), raw))
            self.register_buffer("fixed", None)
        else:
            value = float(obs_std)
            if not value > 0:
                raise ValueError(f"obs_std must be positive, got {obs_std!r}.")
            self.raw = None
            self.register_buffer("fixed", torch.full((n_channels,), value))
        self.learned = self.raw is not None

    def forward(self) -> torch.Tensor:
        """The ``(C,)`` scale per channel, in standardised units."""
        if self.raw is not None:
            return F.softplus(self.raw) + self.floor
        return self.fixed

    def shape_params(self) -> dict[str, torch.Tensor]:
        """Per-channel shape parameters ``{name: (C,)}`` of the standard family (none here)."""
        return {}

    # ------------------------------------------------------------------ training (torch)
    @abstractmethod
    def log_prob(
        self, values: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor,
    ) -> torch.Tensor:
        """Weighted log-density of the observed entries, summed per series.

        Parameters
        ----------
        values : torch.Tensor
            ``(B, M, C)`` observations (any value where unobserved).
        weights : torch.Tensor
            ``(B, M, C)`` weight of each entry: the 0/1 mask of observed entries, or
            :func:`~latentode.nn.observation_weights` of it.
        mean : torch.Tensor
            ``(K, B, M, C)`` decoded locations, one set per trajectory sample.

        Returns
        -------
        torch.Tensor
            ``(K, B)``: ``sum_{m,c} weights * log p(values | mean)``.
        """

    # ------------------------------------------------------------------ calibration (torch)
    @abstractmethod
    def standard_cdf(self, z: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """CDF of the standard family at standardised residuals ``z = (x - m) / scale``.

        Parameters
        ----------
        z : torch.Tensor
            ``(..., n)`` standardised residuals.
        channel : torch.Tensor
            ``(n,)`` long: the channel of each entry of the last axis (selects shape
            parameters).

        Returns
        -------
        torch.Tensor
            Same shape and dtype as ``z``.
        """

    @abstractmethod
    def standard_log_pdf(self, z: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """Log-density of the standard family at ``z`` (arguments as :meth:`standard_cdf`);
        the density of ``x`` is this minus ``log(scale)``."""

    def calibrated_cdf(self, z: torch.Tensor, channel: torch.Tensor,
                       tail_df: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`standard_cdf` with calibrated tails: a Student-t CDF where ``tail_df`` is
        finite.

        Parameters
        ----------
        z, channel : torch.Tensor
            As :meth:`standard_cdf`.
        tail_df : torch.Tensor, optional
            ``(n,)`` degrees of freedom per entry of the last axis; ``inf`` (or None) keeps
            the standard family.

        Returns
        -------
        torch.Tensor
            Same shape and dtype as ``z`` (no gradient where a tail is used).
        """
        if _all_tails(tail_df):  # the standard family would be evaluated for nothing
            return t_cdf_torch(z, tail_df)
        return with_tails_torch(self.standard_cdf(z, channel), z, tail_df, t_cdf_torch)

    def calibrated_log_pdf(self, z: torch.Tensor, channel: torch.Tensor,
                           tail_df: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`standard_log_pdf` with calibrated tails (arguments as
        :meth:`calibrated_cdf`)."""
        if _all_tails(tail_df):
            return t_log_pdf(z, tail_df.to(z.dtype))
        return with_tails_torch(self.standard_log_pdf(z, channel), z, tail_df,
                                 lambda u, df: t_log_pdf(u, df.to(u.dtype)))

    # ------------------------------------------------------------------ predictive (numpy)
    def predictive(self, scale: torch.Tensor) -> Noise:
        """The per-channel predictive noise parameters, float64 numpy, standardised units.

        Parameters
        ----------
        scale : torch.Tensor
            ``(C,)`` scale to use (:attr:`latentode.nn.PredictOutput.obs_std`: the model's
            scale, times the calibration factor when calibrated).

        Returns
        -------
        Noise
            ``{"scale": (C,), **shape parameters}``.
        """
        noise = {"scale": scale.detach().cpu().numpy().astype(np.float64)}
        for key, value in self.shape_params().items():
            noise[key] = value.detach().cpu().numpy().astype(np.float64)
        return noise

    def to_user_units(
        self, mean: np.ndarray, noise: Noise, offset: np.ndarray, scale: np.ndarray
    ) -> tuple[np.ndarray, Noise]:
        """Map decoded locations and noise parameters from standardised to the user's units.

        The channel scaler standardised ``x`` to ``(x - offset) / scale`` per channel; a
        location-scale family maps back by ``m * scale + offset`` and ``noise_scale * scale``
        (shape parameters unchanged).

        Parameters
        ----------
        mean : numpy.ndarray
            ``(..., C)`` decoded locations, standardised.
        noise : Noise
            :meth:`predictive` parameters.
        offset, scale : numpy.ndarray
            ``(C,)`` the scaler's per-channel offset (``ChannelScaler.mean_``) and scale
            (``ChannelScaler.scale_``).

        Returns
        -------
        mean : numpy.ndarray
            float64, same shape as ``mean``.
        noise : Noise
            The parameters in user units.
        """
        user = np.asarray(mean, dtype=np.float64) * scale + offset
        out = dict(noise)
        out["scale"] = np.asarray(noise["scale"], dtype=np.float64) * scale
        return user, out

    def quantiles(self, means: Any, noise: Noise, levels: np.ndarray) -> np.ndarray:
        """Quantiles of the predictive mixture ``(1/S) sum_s p(x | means[s])`` per position.

        Parameters
        ----------
        means : array-like of shape (S, ..., C)
            Decoded locations per posterior sample of ``z_t0`` (any units, with ``noise`` in
            the same units).
        noise : Noise
            Per-channel noise parameters (broadcast along the last axis); with a
            ``"tail_df"`` entry, a Student-t of those degrees of freedom replaces the standard
            family where they are finite (calibrated tails, :mod:`.tails`).
        levels : numpy.ndarray
            Validated levels in ``(0, 1)`` (:func:`latentode.uncertainty.check_quantiles`).

        Returns
        -------
        numpy.ndarray of shape (len(levels), ..., C)
        """
        params = [noise[k] for k in self.shape_names]
        tail_df = noise.get("tail_df")
        if tail_df is None:
            return location_scale_mixture_quantiles(
                means, noise["scale"], levels, cdf=self._np_cdf, pdf=self._np_pdf,
                ppf=self._np_ppf, params=params,
            )
        return location_scale_mixture_quantiles(
            means, noise["scale"], levels, cdf=with_tails(self._np_cdf, t_cdf),
            pdf=with_tails(self._np_pdf, t_pdf), ppf=with_tails(self._np_ppf, t_ppf),
            params=[tail_df, *params],
        )

    def sample(self, means: Any, noise: Noise, rng: np.random.Generator) -> np.ndarray:
        """One draw of an observation per component: ``means + scale * e``, ``e`` standard.

        Parameters
        ----------
        means : array-like of shape (S, ..., C)
            Decoded locations.
        noise : Noise
            Per-channel noise parameters, in the units of ``means`` (with ``"tail_df"``:
            Student-t draws where it is finite, drawn after the standard ones).
        rng : numpy.random.Generator
            Source of the noise.

        Returns
        -------
        numpy.ndarray
            Same shape as ``means``.
        """
        m = np.asarray(means, dtype=np.float64)
        shape = {k: np.broadcast_to(np.asarray(noise[k], dtype=np.float64), m.shape)
                 for k in self.shape_names}
        draws = self.np_standard_draw(rng, m.shape, **shape)
        if noise.get("tail_df") is not None:
            draws = draw_with_tails(draws, noise["tail_df"], rng)
        return m + np.asarray(noise["scale"], dtype=np.float64) * draws

    # numpy standard family: keyword shape parameters, elementwise
    @staticmethod
    @abstractmethod
    def np_cdf(u: np.ndarray, **shape: np.ndarray) -> np.ndarray:
        """CDF of the standard family (numpy, elementwise)."""

    @staticmethod
    @abstractmethod
    def np_pdf(u: np.ndarray, **shape: np.ndarray) -> np.ndarray:
        """Density of the standard family (numpy, elementwise)."""

    @staticmethod
    @abstractmethod
    def np_ppf(q: np.ndarray, **shape: np.ndarray) -> np.ndarray:
        """Quantile function of the standard family (numpy, elementwise)."""

    @staticmethod
    @abstractmethod
    def np_standard_draw(
        rng: np.random.Generator, size: tuple[int, ...], **shape: np.ndarray
    ) -> np.ndarray:
        """``size`` draws of the standard family (shape parameters broadcast to ``size``)."""

    # positional adapters for the shared root finder
    def _np_cdf(self, u: np.ndarray, *params: np.ndarray) -> np.ndarray:
        return self.np_cdf(u, **dict(zip(self.shape_names, params)))

    def _np_pdf(self, u: np.ndarray, *params: np.ndarray) -> np.ndarray:
        return self.np_pdf(u, **dict(zip(self.shape_names, params)))

    def _np_ppf(self, q: np.ndarray, *params: np.ndarray) -> np.ndarray:
        return self.np_ppf(q, **dict(zip(self.shape_names, params)))


def _all_tails(tail_df: torch.Tensor | None) -> bool:
    """Whether every entry of ``tail_df`` takes a Student-t tail (finite degrees of freedom)."""
    return tail_df is not None and tail_df.numel() > 0 and bool(torch.isfinite(tail_df).all())
