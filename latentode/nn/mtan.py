"""Multi-time attention recognition network ``q(z_t0 | x)`` (after Shukla & Marlin, ICLR 2021).

The ODE-RNN and GRU encoders (:mod:`latentode.nn.encoder`) read a series one observation
after another. mTAN ("Multi-Time Attention Networks for Irregularly Sampled Time Series")
instead re-samples it onto ``K`` reference times by attention over a learned embedding of
continuous time, then runs an ordinary recurrent network over the ``K`` regular points:

1. a time embedding ``phi(t) = [w_0 t + b_0, sin(w_1 t + b_1), ..., sin(w_{d-1} t + b_{d-1})]``
   (:class:`TimeEmbedding`), of times relative to ``t0``;
2. per head ``h``, scores ``s_hkn = (Q_h phi(r_k)) . (K_h phi(t_n)) / sqrt(d / H)`` between the
   reference times ``r_k`` (queries, spread evenly over the series' window ``[t0, t_last]``)
   and the observation times ``t_n`` (keys); each channel ``c`` attends over its own
   observations only: ``x_hkc = sum_n a_hknc x_nc`` with ``a_hknc = m_nc exp(s_hkn) /
   sum_n' m_n'c exp(s_hkn')`` (:func:`multi_time_attention`), and a channel never observed in
   the series gives 0;
3. the ``H * C`` attended values and the ``C`` indicators "channel observed in the series" of
   each reference point, mapped linearly to ``gru_units`` features, are read by a
   bidirectional GRU (``rec_dim`` units per direction), whose two final states (forward after
   ``r_{K-1}``, backward after ``r_0 = t0``) with the window's length (and the static
   covariates) give the mean and standard deviation of ``z_t0`` through an MLP head, as the
   other encoders' heads do.

Everything is batched: no loop over series or observations in Python; the memory is that of
the scores, ``O(B * H * K * N)``, and of the attended values, ``O(B * H * K * C)`` (the
per-channel masked softmax is two batched matrix products, never a ``(K, N, C)`` tensor).
The scores are soft-capped, ``30 tanh(s / 30)`` (logit soft-capping), so ``exp`` needs no
running maximum: a channel's weights stay above ``exp(-60)`` of its largest, its denominator
is never 0 once it has an observation, and no NaN or infinity can arise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from latentode.ode.padded import hold_last

from .dynamics import mlp
from .encoder import _SIGMA_FLOOR, check_static

__all__ = ["MTANEncoder", "TimeEmbedding", "multi_time_attention"]

#: bound of the soft-capped attention scores, ``cap * tanh(s / cap)``
SCORE_CAP = 30.0


class TimeEmbedding(nn.Module):
    """Learned embedding of continuous time: one linear and ``dim - 1`` sinusoidal terms.

    ``phi(t) = [w_0 t + b_0, sin(w_1 t + b_1), ..., sin(w_{dim-1} t + b_{dim-1})]`` (mTAN's
    learned embedding, Time2Vec's form). The angular frequencies start log-spaced from 1 to
    100 radians per unit of model time (a series spans about one unit), with phases spread
    over ``[0, 2 pi)``, so that both slow trends and the spacing of a few dozen reference
    points are resolved from the first step; all are trained.

    Parameters
    ----------
    dim : int
        Size of the embedding (``>= 2``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}.")
        self.dim = int(dim)
        self.linear = nn.Linear(1, 1)
        self.periodic = nn.Linear(1, self.dim - 1)
        with torch.no_grad():
            self.periodic.weight.copy_(torch.logspace(0.0, 2.0, self.dim - 1).unsqueeze(1))
            self.periodic.bias.copy_(torch.linspace(0.0, 2.0 * math.pi, self.dim)[:-1])

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``(...)`` times -> ``(..., dim)`` embeddings."""
        t = t.unsqueeze(-1)
        return torch.cat([self.linear(t), torch.sin(self.periodic(t))], dim=-1)


def multi_time_attention(
    scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-channel masked softmax attention of queries over observation times.

    Parameters
    ----------
    scores : torch.Tensor
        ``(B, H, K, N)`` attention scores of each head and query over the ``N`` time points,
        bounded (``|s| <= 30``, see :data:`SCORE_CAP`) so that ``exp`` cannot overflow.
    values : torch.Tensor
        ``(B, N, C)`` observed values; entries where ``mask`` is 0 are never read (NaN
        included).
    mask : torch.Tensor
        ``(B, N, C)`` 1 where channel ``c`` is observed at time point ``n`` (padding: 0).

    Returns
    -------
    torch.Tensor
        ``(B, H, K, C)``: ``sum_n m_nc exp(s_hkn) x_nc / sum_n m_nc exp(s_hkn)``, and exactly 0
        (with zero gradient) for a channel without an observation in the series.

    Examples
    --------
    >>> s = torch.zeros(1, 1, 1, 3)                              # equal scores
    >>> x = torch.tensor([[[1.0, 5.0], [3.0, float("nan")], [9.0, 7.0]]])
    >>> m = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    >>> multi_time_attention(s, x, m)[0, 0, 0]                   # mean of 1 and 3; 0
    tensor([2., 0.])
    """
    observed = mask > 0
    m = observed.to(scores.dtype).unsqueeze(1)                                  # (B, 1, N, C)
    x = torch.where(observed, values, torch.zeros_like(values)).unsqueeze(1)   # (B, 1, N, C)
    e = torch.exp(scores)                                                       # (B, H, K, N)
    den = e @ m                                                                 # (B, H, K, C)
    num = e @ (m * x)
    # no observation of the channel: num is 0 and so is the result (a guarded denominator)
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _window(
    times: torch.Tensor, lengths: torch.Tensor, t0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A padded batch's window: ``lengths`` as long, the ``(B, N)`` valid positions, the
    ``(B,)`` start (``t0``, default the first time) and the ``(B,)`` last valid time."""
    lengths = lengths.to(device=times.device, dtype=torch.long)
    _, valid, last_t = hold_last(times, lengths)
    start = times[:, 0] if t0 is None else t0.to(times.dtype)
    return lengths, valid, start, last_t.squeeze(1)


class MTANEncoder(nn.Module):
    """Multi-time attention encoder of ``q(z_t0)`` (mTAN's ``enc_mtan_rnn``, Shukla & Marlin 2021).

    Re-samples each series onto ``n_ref`` reference times spread evenly over its window
    ``[t0, t_last]`` by multi-head attention over learned time embeddings, each channel
    attending over its own observations, then reads them with a bidirectional GRU (see the
    module docstring for the equations). Times enter relative to ``t0``, so shifting a series
    in time does not change its encoding, as for the recurrent encoders.

    Parameters
    ----------
    n_channels : int
        Number of observed channels ``C``.
    latent_dim : int
        Size of the latent initial state.
    rec_dim : int
        Hidden state size of each direction of the GRU over the reference points.
    units : int
        Hidden width of the output head, and the size of the time embedding when
        ``embed_dim`` is None.
    gru_units : int
        Width of the features of each reference point read by the GRU (mTAN's ``nhidden``).
    n_static : int
        Per-series static covariates appended to the output head's input (0: none).
    n_ref : int
        Number ``K`` of reference times.
    n_heads : int
        Attention heads (must divide the embedding size).
    embed_dim : int, optional
        Size of the time embedding and of the attention's query / key projections (mTAN's
        ``embed_time``; published with 128); None: ``units``.

    Attributes
    ----------
    state_dim : int
        ``2 * rec_dim``, the width of the states ``forward(..., return_states=True)`` returns.
    """

    def __init__(
        self,
        n_channels: int,
        latent_dim: int,
        rec_dim: int = 40,
        units: int = 50,
        gru_units: int = 50,
        n_static: int = 0,
        n_ref: int = 64,
        n_heads: int = 1,
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        if min(n_channels, latent_dim, rec_dim, gru_units, n_heads) < 1 or n_ref < 2:
            raise ValueError("n_channels, latent_dim, rec_dim, gru_units and n_heads must be "
                             f">= 1 and n_ref >= 2, got {n_channels}, {latent_dim}, {rec_dim}, "
                             f"{gru_units}, {n_heads} and {n_ref}.")
        embed = units if embed_dim is None else embed_dim
        if embed < 2 or embed % n_heads:
            raise ValueError("the time embedding (embed_dim, or units when it is None) must be "
                             f">= 2 and a multiple of n_heads, got {embed} and {n_heads}.")
        self.n_channels = int(n_channels)
        self.rec_dim = int(rec_dim)
        self.n_static = int(n_static)
        self.n_ref = int(n_ref)
        self.n_heads = int(n_heads)
        self.embedding = TimeEmbedding(embed)
        self.query = nn.Linear(embed, embed)
        self.key = nn.Linear(embed, embed)
        self.project = nn.Linear((self.n_heads + 1) * self.n_channels, gru_units)
        self.gru = nn.GRU(gru_units, self.rec_dim, batch_first=True, bidirectional=True)
        self.head = mlp(2 * self.rec_dim + 1 + self.n_static, 2 * latent_dim, 1, units)

    @property
    def state_dim(self) -> int:
        """Width of each reference point's state: both GRU directions, ``2 * rec_dim``."""
        return 2 * self.rec_dim

    @classmethod
    def from_config(
        cls, n_channels: int, latent_dim: int, rec_dim: int, *, units: int, rec_layers: int,
        gru_units: int, enc_step_size: float, n_static: int = 0, mtan_ref_points: int = 64,
        mtan_embed_dim: int | None = None,
    ) -> MTANEncoder:
        """Build from :class:`~latentode.nn.LatentODE`'s options (the encoder registry's call;
        ``rec_layers`` and ``enc_step_size`` are not used: nothing evolves in time;
        ``mtan_ref_points`` and ``mtan_embed_dim`` are ``n_ref`` and ``embed_dim``)."""
        return cls(n_channels, latent_dim, rec_dim, units, gru_units, n_static=n_static,
                   n_ref=mtan_ref_points, embed_dim=mtan_embed_dim)

    def reference_times(
        self, times: torch.Tensor, lengths: torch.Tensor, t0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, n_ref)`` reference times, evenly spaced from ``t0`` (default: the first
        time) to each series' last valid time."""
        _, _, start, last_t = _window(times, lengths, t0)
        frac = torch.linspace(0.0, 1.0, self.n_ref, dtype=times.dtype, device=times.device)
        return start.unsqueeze(1) + (last_t - start).unsqueeze(1) * frac

    def attend(
        self,
        times: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        lengths: torch.Tensor,
        t0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The attended values ``(B, n_heads, n_ref, C)`` of each channel at the reference
        times (0 for a channel never observed in the series; padding is never read)."""
        b, n = times.shape
        lengths, valid, start, _ = _window(times, lengths, t0)
        # padded times may hold anything: they are replaced before being embedded
        rel = torch.where(valid, times, start.unsqueeze(1)) - start.unsqueeze(1)     # (B, N)
        ref = self.reference_times(times, lengths, t0) - start.unsqueeze(1)          # (B, K)
        h, d = self.n_heads, self.embedding.dim // self.n_heads
        q = self.query(self.embedding(ref)).view(b, self.n_ref, h, d).transpose(1, 2)
        k = self.key(self.embedding(rel)).view(b, n, h, d).transpose(1, 2)
        raw = q @ k.transpose(-2, -1) / math.sqrt(d)                                # (B,H,K,N)
        scores = SCORE_CAP * torch.tanh(raw / SCORE_CAP)
        obs = (mask > 0) & valid.unsqueeze(-1)
        return multi_time_attention(scores, values, obs.to(scores.dtype))

    def forward(
        self,
        times: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        lengths: torch.Tensor,
        t0: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
        return_states: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Encode a padded batch into ``q(z_t0)``.

        Parameters
        ----------
        times : torch.Tensor
            ``(B, N)`` observation times, ascending over each series' valid prefix.
        values : torch.Tensor
            ``(B, N, C)`` observed values (entries where ``mask`` is 0 are never read).
        mask : torch.Tensor
            ``(B, N, C)`` float mask, 1 where observed.
        lengths : torch.Tensor
            ``(B,)`` number of valid time points per series (``>= 1``).
        t0 : torch.Tensor, optional
            ``(B,)`` time of the latent initial state, ``<= times[:, 0]`` (default: the first
            observation time); the first reference time.
        static : torch.Tensor, optional
            ``(B, n_static)`` per-series covariates appended to the output head's input
            (required when the encoder was built with ``n_static > 0``, refused otherwise).
        return_states : bool
            Also return the GRU's states at every reference point, for a head that pools
            them (:class:`~latentode.nn.pooling.StatePooling`).

        Returns
        -------
        mu, sigma : torch.Tensor
            ``(B, latent_dim)`` mean and standard deviation of ``q(z_t0)``. Padded positions
            (index ``>= lengths[b]``) and unobserved entries do not influence series ``b``.
        states, observed : torch.Tensor
            With ``return_states`` only: ``(n_ref, B, state_dim)`` the concatenated forward
            and backward GRU outputs at each reference point, and ``(n_ref, B)`` bool, all
            True (every reference point of every series is a state to pool).
        """
        b = times.shape[0]
        check_static(static, self.n_static, b)
        lengths, valid, start, last_t = _window(times, lengths, t0)
        attended = self.attend(times, values, mask, lengths, start)             # (B, H, K, C)
        seen = ((mask > 0) & valid.unsqueeze(-1)).any(1).to(attended.dtype)     # (B, C)
        feats = torch.cat([attended.permute(0, 2, 1, 3).reshape(b, self.n_ref, -1),
                           seen.unsqueeze(1).expand(-1, self.n_ref, -1)], dim=-1)
        out, h_n = self.gru(self.project(feats))          # (B, K, 2 rec_dim), (2, B, rec_dim)
        head_in = [h_n[0], h_n[1], (last_t - start).unsqueeze(-1)]
        if static is not None:
            head_in.append(static.to(out.dtype))
        mu, raw = self.head(torch.cat(head_in, dim=-1)).chunk(2, dim=-1)
        sigma = F.softplus(raw) + _SIGMA_FLOOR
        if return_states:
            observed = torch.ones(self.n_ref, b, dtype=torch.bool, device=times.device)
            return mu, sigma, out.transpose(0, 1), observed
        return mu, sigma
