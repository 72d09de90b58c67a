"""The padded mini-batch the model layer consumes (torch only).

:class:`Batch` is the one type shared by the data layer (which builds it), the model layer
(`latentode.nn`) and training (`latentode.training`). It lives at the top of the package, outside
`latentode.data`, so that importing it never runs `latentode.data.__init__` (pandas).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["Batch", "UNLABELLED", "rebatch"]

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

    def valid_mask(self) -> torch.Tensor:
        """``mask`` zeroed beyond each series' valid prefix (``lengths``): the observed
        entries a computation over the batch may count, ``(B, N, C)`` of ``mask``'s dtype."""
        n = self.mask.shape[1]
        valid = (torch.arange(n, device=self.mask.device).unsqueeze(0)
                 < self.lengths.to(self.mask.device).unsqueeze(1))
        return self.mask * valid.unsqueeze(-1).to(self.mask.dtype)

    @property
    def batch_size(self) -> int:
        return int(self.times.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[-1])


def rebatch(batches: list[Batch], batch_size: int) -> list[Batch]:
    """The series of ``batches``, in their order, regrouped into batches of ``batch_size``
    (the last one smaller), each padded to its own longest series.

    Parameters
    ----------
    batches : list of Batch
        On one device, with the same channels and the same per-series fields present.
    batch_size : int
        Series per batch (>= 1).

    Returns
    -------
    list of Batch
        The same series, values and masks; padded time points repeat the series' last valid
        time, as :class:`Batch` pads them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if not batches:
        return []
    width = max(b.times.shape[1] for b in batches)

    def padded(b: Batch, name: str) -> torch.Tensor:
        x = getattr(b, name)
        extra = width - x.shape[1]
        if extra == 0:
            return x
        if name == "times":  # repeat the last valid time of each series
            last = x.gather(1, (b.lengths.to(x.device) - 1).clamp(min=0).unsqueeze(1))
            return torch.cat([x, last.expand(-1, extra)], dim=1)
        return torch.cat([x, x.new_zeros((x.shape[0], extra, *x.shape[2:]))], dim=1)

    whole = {name: torch.cat([padded(b, name) for b in batches])
             for name in ("times", "values", "mask")}
    whole["lengths"] = torch.cat([b.lengths for b in batches])
    for name in ("static", "labels", "weights"):
        parts = [getattr(b, name) for b in batches]
        whole[name] = None if parts[0] is None else torch.cat(parts)
    out = []
    for start in range(0, len(whole["lengths"]), batch_size):
        rows = slice(start, start + batch_size)
        n = max(int(whole["lengths"][rows].max()), 1)
        out.append(Batch(**{name: None if x is None
                            else x[rows, :n] if name in ("times", "values", "mask")
                            else x[rows] for name, x in whole.items()}))
    return out
