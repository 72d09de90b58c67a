"""Student-t observation noise: ``x_c = m_c + scale_c * e``, ``e ~ t(df_c)`` (heavy tails)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import ObservationModel
from .tails import t_cdf, t_cdf_torch, t_draw, t_log_pdf, t_pdf, t_ppf

__all__ = ["StudentTObservation"]

_LOG_PI = math.log(math.pi)


class StudentTObservation(ObservationModel):
    """Per-channel Student-t observation noise with learned or fixed degrees of freedom.

    ``x_c(t) = m_c(t) + scale_c * e`` with ``e`` a standard Student-t of ``df_c`` degrees of
    freedom: the Gaussian as ``df -> inf``, with heavier tails for small ``df``, so that a few
    outlying values (artefacts, transcription errors) cost a logarithmic rather than a
    quadratic penalty and do not pull the latent trajectory or inflate the scale.

    Parameters
    ----------
    n_channels : int
        Number of channels.
    obs_std : "learned" or float
        The scale (not the standard deviation, which is ``scale * sqrt(df / (df - 2))`` for
        ``df > 2``): learned per channel as ``softplus(raw) + floor`` from ``init``, or fixed.
    init, floor : float
        Initial value and lower bound of the learned scale, in standardised units.
    df : "learned" or float
        Degrees of freedom: ``"learned"`` per channel, ``df = softplus(raw_df) + df_floor``
        from ``df_init``; or a positive float shared by every channel.
    df_init, df_floor : float
        Initial value and lower bound of the learned degrees of freedom. The floor of 1 keeps
        the mean of the noise defined, so the decoded location stays the predictive mean.

    Notes
    -----
    The calibration hook's CDF (:meth:`standard_cdf`, used only under :func:`torch.no_grad` by
    :func:`~latentode.training.calibrate_spread`) is evaluated by :func:`scipy.special.stdtr` on
    the host, as torch has no Student-t CDF; the log-density is torch and differentiable in the
    scale and the degrees of freedom.

    Examples
    --------
    >>> import numpy as np
    >>> obs = StudentTObservation(1, obs_std=1.0, df=3.0)
    >>> noise = obs.predictive(obs())
    >>> obs.quantiles(np.zeros((1, 1)), noise, np.array([0.975])).round(3).tolist()
    [[3.182]]
    """

    name: ClassVar[str] = "student_t"
    shape_names: ClassVar[tuple[str, ...]] = ("df",)

    def __init__(
        self, n_channels: int, obs_std: str | float = "learned", init: float = 0.2,
        floor: float = 1e-3, df: str | float = "learned", df_init: float = 4.0,
        df_floor: float = 1.0,
    ) -> None:
        super().__init__()
        self._init_scale(n_channels, obs_std, init, floor)
        self.df_floor = float(df_floor)
        if isinstance(df, str):
            if df != "learned":
                raise ValueError(f"df must be 'learned' or a positive float, got {df!r}.")
            if not df_init > df_floor:
                raise ValueError(f"df_init ({df_init}) must exceed df_floor ({df_floor}).")
            raw = math.log(math.expm1(df_init - df_floor))  # inverse softplus
            self.raw_df = nn.Parameter(torch.full((n_channels,), raw))
            self.register_buffer("fixed_df", None)
        else:
            value = float(df)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"df must be a positive finite number, got {df!r}.")
            self.raw_df = None
            self.register_buffer("fixed_df", torch.full((n_channels,), value))
        self.learned_df = self.raw_df is not None

    @classmethod
    def from_config(
        cls, n_channels: int, *, obs_std: str | float, obs_std_init: float,
        obs_std_floor: float, obs_df: str | float = "learned",
    ) -> StudentTObservation:
        """Build from :class:`~latentode.nn.LatentODE`'s options (``obs_df`` is ``df``)."""
        return cls(n_channels, obs_std, obs_std_init, obs_std_floor, df=obs_df)

    def df(self) -> torch.Tensor:
        """The ``(C,)`` degrees of freedom."""
        if self.raw_df is not None:
            return F.softplus(self.raw_df) + self.df_floor
        return self.fixed_df

    def shape_params(self) -> dict[str, torch.Tensor]:
        """``{"df": (C,)}``."""
        return {"df": self.df()}

    def log_prob(
        self, values: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor,
    ) -> torch.Tensor:
        """``sum_{m,c} weights * log t(values; mean, scale, df)`` per (sample, series)."""
        scale, df = self(), self.df()
        z = (values - mean) / scale
        log_norm = (torch.lgamma(0.5 * (df + 1.0)) - torch.lgamma(0.5 * df)
                    - 0.5 * (torch.log(df) + _LOG_PI) - torch.log(scale))
        log_prob = log_norm - 0.5 * (df + 1.0) * torch.log1p(z.square() / df)
        return (log_prob * weights).sum(dim=(-2, -1))

    def standard_cdf(self, z: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """Student-t CDF of ``df[channel]`` degrees of freedom (on the host, no gradient)."""
        return t_cdf_torch(z, self.df().detach()[channel])

    def standard_log_pdf(self, z: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """Log-density of the standard Student-t of ``df[channel]`` degrees of freedom."""
        return t_log_pdf(z, self.df()[channel].to(z.dtype))

    @staticmethod
    def np_cdf(u: np.ndarray, df: np.ndarray) -> np.ndarray:
        """Student-t CDF."""
        return t_cdf(u, df)

    @staticmethod
    def np_pdf(u: np.ndarray, df: np.ndarray) -> np.ndarray:
        """Student-t density."""
        return t_pdf(u, df)

    @staticmethod
    def np_ppf(q: np.ndarray, df: np.ndarray) -> np.ndarray:
        """Student-t quantile function."""
        return t_ppf(q, df)

    @staticmethod
    def np_standard_draw(
        rng: np.random.Generator, size: tuple[int, ...], df: np.ndarray
    ) -> np.ndarray:
        """Standard Student-t draws of ``df`` (broadcast to ``size``) degrees of freedom."""
        return t_draw(rng, size, df)
