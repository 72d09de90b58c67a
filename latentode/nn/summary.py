"""Per-series summaries of the observed values, the classifier head's "wide" input (torch only).

A logistic regression on a few summaries of each channel (last, mean, min, max and count of
its observations) is a strong baseline of series classification (PhysioNet mortality, README):
those numbers carry much of the signal, and a latent code compressed for reconstruction may
keep them only approximately. :func:`series_summary` computes them, deterministically, from
the padded tensors of a :class:`~latentode.batch.Batch` (standardised values, model time);
:class:`SeriesSummary` standardises them with statistics of the training series, fitted once
(:meth:`SeriesSummary.fit`) and stored as buffers (saved with the model).
``LatentODE(head_inputs="latent+summary")`` feeds them to the classifier beside ``z_t0``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..batch import Batch

__all__ = ["SUMMARY_STATS", "SeriesSummary", "series_summary"]

#: the statistics of each channel, in the order of :func:`series_summary`'s middle dimension:
#: the last observed value, the mean, minimum and maximum of the observed values (standardised
#: units), ``log(1 + count)`` of the observations, the time from the channel's last observation
#: to the series' last time point (model time), and 1 where the channel has no observation
SUMMARY_STATS = ("last", "mean", "min", "max", "log_count", "since_last", "missing")

#: the statistics that exist only where the channel is observed (0 where it is not, and
#: standardised over the series that observe it)
_CONDITIONAL = (True, True, True, True, False, True, False)


def series_summary(times: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                   lengths: torch.Tensor) -> torch.Tensor:
    """Summaries ``(B, len(SUMMARY_STATS), C)`` of each channel's observed values.

    For series ``b`` and channel ``c``, over the observed entries (``mask > 0`` within the
    first ``lengths[b]`` time points): :data:`SUMMARY_STATS` in order, i.e. the value at the
    latest observed time, the mean, the minimum, the maximum, ``log(1 + n)`` with ``n`` the
    number of observations, ``times[b, lengths[b] - 1] - t_last`` (the time since the
    channel's last observation at the end of the series) and the missing indicator. A channel
    with no observation in the series has ``log_count = 0``, ``missing = 1`` and 0 for the
    five others: nothing is made up for it.

    Parameters
    ----------
    times : torch.Tensor
        ``(B, N)`` ascending times per series (model time).
    values : torch.Tensor
        ``(B, N, C)`` values (standardised); unobserved entries are ignored, whatever they hold.
    mask : torch.Tensor
        ``(B, N, C)``, 1 where observed.
    lengths : torch.Tensor
        ``(B,)`` valid time points per series (>= 1); later positions are ignored.

    Returns
    -------
    torch.Tensor
        ``(B, 7, C)`` in the dtype of ``values``; no gradient flows to the inputs' positions
        (the statistics are of data).

    Examples
    --------
    >>> times = torch.tensor([[0.0, 0.5, 1.0]])
    >>> values = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [0.0, 0.0]]])
    >>> mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    >>> series_summary(times, values, mask, torch.tensor([3]))[0, :, 0]
    tensor([3.0000, 2.0000, 1.0000, 3.0000, 1.0986, 0.5000, 0.0000])
    """
    b, n, _ = values.shape
    pos = torch.arange(n, device=values.device)
    valid = (pos.unsqueeze(0) < lengths.to(values.device).unsqueeze(1)).unsqueeze(-1)  # (B, N, 1)
    observed = (mask > 0) & valid                                                    # (B, N, C)
    count = observed.sum(1)                                                          # (B, C)
    seen = count > 0
    zero = values.new_zeros(())
    v = torch.where(observed, values, zero)
    mean = v.sum(1) / count.clamp(min=1).to(values.dtype)
    inf = torch.tensor(float("inf"), dtype=values.dtype, device=values.device)
    vmin = torch.where(observed, values, inf).amin(1)
    vmax = torch.where(observed, values, -inf).amax(1)
    last_idx = torch.where(observed, pos.view(1, n, 1), -1).amax(1).clamp(min=0)     # (B, C)
    last = values.gather(1, last_idx.unsqueeze(1)).squeeze(1)
    t = times.to(values.dtype)
    end = t.gather(1, (lengths.to(times.device).long() - 1).clamp(min=0).view(b, 1))  # (B, 1)
    since = end - t.gather(1, last_idx)
    stats = [last, mean, vmin, vmax, since]
    last, mean, vmin, vmax, since = (torch.where(seen, s, zero) for s in stats)
    log_count = torch.log1p(count.to(values.dtype))
    missing = (~seen).to(values.dtype)
    return torch.stack([last, mean, vmin, vmax, log_count, since, missing], dim=1)


class SeriesSummary(nn.Module):
    """:func:`series_summary` of a batch, standardised with statistics of the training series.

    ``forward(batch)`` returns ``(B, 7 * C)``: the summary ``(B, 7, C)`` flattened statistic
    after statistic (entry ``k * C + c`` is statistic ``SUMMARY_STATS[k]`` of channel ``c``),
    each entry ``(x - loc) / scale``. ``loc`` and ``scale`` (buffers ``(7, C)``, saved with
    the model) are set by :meth:`fit`: for ``last``, ``mean``, ``min``, ``max`` and
    ``since_last``, the mean and standard deviation over the training series that observe
    the channel, and the entry is 0 where the channel is not observed (the standardised
    training mean; ``missing`` says so); for ``log_count``, over all training series;
    ``missing`` stays 0 / 1. A standard deviation below ``1e-6`` (a constant statistic) is
    replaced by 1. Until :meth:`fit`, ``loc = 0`` and ``scale = 1``.

    Parameters
    ----------
    n_channels : int
        Number ``C`` of channels.

    Attributes
    ----------
    n_features : int
        ``7 * n_channels``, the width of the output.
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}.")
        self.n_channels = int(n_channels)
        k = len(SUMMARY_STATS)
        self.register_buffer("loc", torch.zeros(k, self.n_channels))
        self.register_buffer("scale", torch.ones(k, self.n_channels))
        self.register_buffer("conditional", torch.tensor(_CONDITIONAL).view(k, 1),
                             persistent=False)

    @property
    def n_features(self) -> int:
        """Width of the output, ``len(SUMMARY_STATS) * n_channels``."""
        return len(SUMMARY_STATS) * self.n_channels

    @staticmethod
    def raw(batch: Batch) -> torch.Tensor:
        """The unstandardised :func:`series_summary` ``(B, 7, C)`` of ``batch``."""
        return series_summary(batch.times, batch.values, batch.mask, batch.lengths)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Standardised summaries ``(B, 7 * C)`` of the series of ``batch``."""
        raw = self.raw(batch)
        out = (raw - self.loc.to(raw.dtype)) / self.scale.to(raw.dtype)
        seen = raw[:, SUMMARY_STATS.index("missing")].unsqueeze(1) == 0       # (B, 1, C)
        out = torch.where(self.conditional & ~seen, out.new_zeros(()), out)
        return out.flatten(1)

    @torch.no_grad()
    def fit(self, batches: Iterable[Batch]) -> SeriesSummary:
        """Set ``loc`` and ``scale`` from the series of ``batches`` (the training series).

        Parameters
        ----------
        batches : iterable of Batch
            Every training series once (e.g. one pass of the training loader).

        Returns
        -------
        self : SeriesSummary
        """
        k = len(SUMMARY_STATS)
        dev = self.loc.device
        total = torch.zeros(k, self.n_channels, dtype=torch.float64, device=dev)
        squares = torch.zeros_like(total)
        counts = torch.zeros_like(total)
        for batch in batches:
            raw = self.raw(batch).to(device=dev, dtype=torch.float64)        # (B, k, C)
            seen = (raw[:, SUMMARY_STATS.index("missing")] == 0).unsqueeze(1)
            w = torch.where(self.conditional, seen, torch.ones_like(seen)).to(torch.float64)
            total += (w * raw).sum(0)
            squares += (w * raw * raw).sum(0)
            counts += w.sum(0)
        n = counts.clamp(min=1.0)
        loc = total / n
        std = (squares / n - loc * loc).clamp(min=0.0).sqrt()
        scale = torch.where(std < 1e-6, torch.ones_like(std), std)
        plain = torch.tensor([s == "missing" for s in SUMMARY_STATS], device=dev).view(k, 1)
        self.loc.copy_(torch.where(plain, torch.zeros_like(loc), loc))
        self.scale.copy_(torch.where(plain, torch.ones_like(scale), scale))
        return self
