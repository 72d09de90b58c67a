"""The padded mini-batch the model layer consumes (torch only).

:class:`Batch` is the one type shared by the data layer (which builds it), the model layer
(`latentode.nn`) and training (`latentode.training`). It lives at the top of the package, outside
`latentode.data`, so that importing it never runs `latentode.data.__init__` (pandas).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["Batch", "UNLABELLED"]

#: the class index of a series without a label in ``Batch.labels`` (semi-supervised training:
#: the series trains the ELBO only; its cross-entropy is 0 and it is not counted)
UNLABELLED = -1


@dataclass
class Batch:
    """A mini-batch of ragged series, padded to a common length.

    Attributes
    ----------
    times : torch.Tensor
        ``(B, N)`` model times, ascending per series; padded positions repeat the last valid time.
    values : torch.Tensor
        ``(B, N, C)`` standardised values, 0 where unobserved.
    mask : torch.Tensor
        ``(B, N, C)`` float mask, 1 where a value was observed.
    lengths : torch.Tensor
        ``(B,)`` long, number of valid time points of each series (at least 1).
    static : torch.Tensor or None
        ``(B, S)`` encoded static covariates of each series (one-hot / standardised values and
        missing-value indicators, see :class:`latentode.data.StaticEncoder`), or None. They
        condition the encoder's posterior and the classifier; the likelihood never scores them.
    labels : torch.Tensor or None
        ``(B,)`` long class index of each series (classification training), or None;
        :data:`UNLABELLED` (-1) marks a series without a label (semi-supervised training: the
        classification loss and scores leave it out, the ELBO keeps it).
    weights : torch.Tensor or None
        ``(B,)`` float weight of each series in the classification loss (``class_weight``), or
        None (weight 1); ignored for unlabelled series.
    """

    times: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    static: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Return a copy on ``device`` (floating tensors cast to ``dtype`` if given)."""
        out = {}
        for f in fields(self):
            x = getattr(self, f.name)
            if x is None:
                out[f.name] = None
            elif dtype is not None and x.is_floating_point():
                out[f.name] = x.to(device=device, dtype=dtype, non_blocking=True)
            else:
                out[f.name] = x.to(device=device, non_blocking=True)
        return Batch(**out)

    def per_series(self, rows: slice | None = None) -> dict[str, torch.Tensor | None]:
        """The per-series fields (``static``, ``labels``, ``weights``), cut to ``rows`` if given.

        For building a batch of other time points of the same series:
        ``Batch(times, values, mask, lengths, **batch.per_series())``.
        """
        out: dict[str, torch.Tensor | None] = {}
        for name in ("static", "labels", "weights"):
            x = getattr(self, name)
            out[name] = x if x is None or rows is None else x[rows]
        return out

    @property
    def batch_size(self) -> int:
        return int(self.times.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[-1])
