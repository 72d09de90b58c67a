"""Per-series classification head and its weighted cross-entropy (torch only).

The Latent ODE paper (Rubanova et al., 2019, sec. 5, PhysioNet mortality) classifies a series
from its initial latent state ``z_t0`` with a small ReLU MLP and trains it jointly with the
ELBO: ``loss = -ELBO + ce_weight * cross_entropy``. Its ODE-RNN classifier reads the encoder's
output instead and is trained by the cross-entropy alone. :class:`ClassifierHead` is that MLP;
:func:`weighted_cross_entropy` the loss, with per-series weights (``class_weight``), and
:func:`labelled_mean` its average over the labelled series of a batch (semi-supervised training:
series labelled :data:`~latentode.batch.UNLABELLED` train the ELBO only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..batch import UNLABELLED
from .dynamics import mlp

__all__ = ["ClassifierHead", "weighted_cross_entropy", "labelled_mean", "CLASSIFIER_INPUTS",
           "HEAD_INPUTS"]

#: what the classifier reads: a sample of ``z_t0`` trained with the ELBO ("latent", the paper's
#: Latent ODE classifier) or the encoder's output trained by cross-entropy alone ("encoder", the
#: paper's ODE-RNN classifier)
CLASSIFIER_INPUTS = ("latent", "encoder")

#: what the head reads beside the static covariates: the latent code alone ("latent"), or also
#: the standardised per-channel summaries of the observed values
#: (:class:`~latentode.nn.summary.SeriesSummary`), either inside its MLP ("latent+summary") or
#: through a linear map added to the MLP's logits ("latent+wide", a "wide and deep" head); a
#: "+pooled" suffix adds the encoder's hidden states pooled over the series' observations
#: (:class:`~latentode.nn.pooling.StatePooling`) to the MLP's input
HEAD_INPUTS = ("latent", "latent+summary", "latent+wide", "latent+pooled",
               "latent+summary+pooled")


class ClassifierHead(nn.Module):
    """Logits of ``n_classes`` classes from a latent state, static covariates and summaries.

    ``logits = MLP([z, s])`` with ``n_layers`` ReLU hidden layers of ``units`` (the paper uses
    two layers of 300). With ``n_summary > 0`` the head also reads a vector ``u`` of per-series
    summaries (:class:`~latentode.nn.summary.SeriesSummary`): ``logits = MLP([z, s, u])``
    (``wide=False``) or ``logits = MLP([z, s]) + W u`` (``wide=True``: a linear "wide" part
    beside the "deep" one, as a logistic regression on the summaries). With ``n_pooled > 0``
    the MLP also reads a vector ``p`` of the encoder's pooled hidden states
    (:class:`~latentode.nn.pooling.StatePooling`), last: ``MLP([z, s, u, p])``. With ``dropout > 0``
    the input of every linear layer of the MLP (its input and each hidden activation) is
    dropped out in training mode (:func:`torch.nn.functional.dropout`: each entry zeroed with
    probability ``dropout``, the others scaled by ``1 / (1 - dropout)``), and so is ``u`` before
    the wide part; the masks are drawn from the ``generator`` passed to :meth:`forward` (torch's
    global generator without one), so that a seeded fit is reproducible. In eval mode the head
    is deterministic and the same function whatever ``dropout`` is.

    Parameters
    ----------
    latent_dim : int
        Size of the latent input ``z``.
    n_classes : int
        Number of classes (>= 2); one logit each.
    n_static : int
        Size of the static covariate vector appended to ``z`` (0: none).
    units : int
        Hidden width.
    n_layers : int
        Hidden layers.
    dropout : float
        Dropout probability in ``[0, 1)`` of the input of each linear layer in training mode
        (0: none). The parameters (and their state-dict keys) do not depend on it.
    n_summary : int
        Size of the summary vector ``u`` (0: none, the head of before, same state-dict keys).
    wide : bool
        With ``n_summary > 0``: ``u`` enters through the linear map ``wide`` added to the
        logits (True) or as input of the MLP (False).
    n_pooled : int
        Size of the pooled-state vector ``p`` (0: none).
    """

    def __init__(self, latent_dim: int, n_classes: int, n_static: int = 0, units: int = 50,
                 n_layers: int = 2, dropout: float = 0.0, n_summary: int = 0,
                 wide: bool = False, n_pooled: int = 0) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}.")
        if n_summary < 0 or n_pooled < 0:
            raise ValueError(f"n_summary and n_pooled must be >= 0, got {n_summary} and "
                             f"{n_pooled}.")
        if wide and n_pooled:
            raise ValueError("A wide head (wide=True) takes no pooled states.")
        self.n_static = int(n_static)
        self.n_classes = int(n_classes)
        self.n_summary = int(n_summary)
        self.n_pooled = int(n_pooled)
        self.dropout = float(dropout)
        deep_summary = 0 if wide else self.n_summary
        self.net = mlp(latent_dim + self.n_static + deep_summary + self.n_pooled, self.n_classes,
                       n_layers, units, nn.ReLU)
        self.wide: nn.Linear | None = (nn.Linear(self.n_summary, self.n_classes)
                                       if wide and self.n_summary else None)

    def forward(self, z: torch.Tensor, static: torch.Tensor | None = None,
                summary: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                pooled: torch.Tensor | None = None) -> torch.Tensor:
        """``z (..., B, latent_dim)``, ``static (B, n_static)``, ``summary (B, n_summary)`` and
        ``pooled (B, n_pooled)`` -> ``(..., B, n_classes)``; ``generator`` draws the dropout
        masks in training mode."""
        parts = [z]
        for name, x, width in (("static covariates", static, self.n_static),
                               ("summary features", summary, self.n_summary),
                               ("pooled states", pooled, self.n_pooled)):
            if not width:
                continue
            if x is None:
                raise ValueError(f"This classifier takes {width} {name}; got none.")
            parts.append(x.to(z.dtype).expand(*z.shape[:-1], width))
        u = parts.pop() if self.wide is not None else None
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else z
        drop = self.dropout > 0.0 and self.training
        if not drop:
            out = self.net(x)
        else:
            out = x
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    out = self._drop(out, generator)
                out = layer(out)
        if u is not None:
            out = out + self.wide(self._drop(u, generator) if drop else u)
        return out

    def _drop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Inverted dropout of ``x`` with probability ``dropout``, its mask drawn from
        ``generator`` (on the generator's device) or, without one, torch's global generator."""
        if generator is None:
            return F.dropout(x, self.dropout, training=True)
        keep = torch.rand(x.shape, generator=generator, device=generator.device) >= self.dropout
        return x * keep.to(device=x.device, dtype=x.dtype) / (1.0 - self.dropout)


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-series cross-entropy ``weights_b * -log softmax(logits_b)[labels_b]``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(..., B, K)`` logits (leading dimensions, e.g. trajectory samples, are averaged).
    labels : torch.Tensor
        ``(B,)`` class indices in ``[0, K)``, or :data:`~latentode.batch.UNLABELLED` (-1) for a
        series without a label, whose cross-entropy is exactly 0 (and so is its gradient).
    weights : torch.Tensor, optional
        ``(B,)`` per-series weights (scikit-learn's ``class_weight`` turned into one weight per
        series); default 1. Ignored for unlabelled series.

    Returns
    -------
    torch.Tensor
        ``(B,)`` weighted cross-entropy of each series (averaged over leading dimensions); 0
        for unlabelled series.

    Examples
    --------
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    >>> weighted_cross_entropy(logits, torch.tensor([0, 0, -1]), torch.tensor([1.0, 3.0, 1.0]))
    tensor([0.1269, 6.3808, 0.0000])
    """
    labels = labels.to(device=logits.device, dtype=torch.long)
    known = labels != UNLABELLED
    logp = F.log_softmax(logits, dim=-1)
    idx = labels.clamp(min=0).expand(*logits.shape[:-1]).unsqueeze(-1)
    ce = -logp.gather(-1, idx).squeeze(-1)  # (..., B)
    ce = ce.reshape(-1, ce.shape[-1]).mean(0)
    if weights is not None:
        ce = ce * weights.to(device=ce.device, dtype=ce.dtype)
    return torch.where(known, ce, torch.zeros_like(ce))


def labelled_mean(ce: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of a batch: ``sum_b ce_b / n_labelled`` over its labelled series.

    The mean over the series whose label is not :data:`~latentode.batch.UNLABELLED` (the
    plain mean when every series is labelled), so that a classification weight keeps its
    meaning (the weight of one labelled series' cross-entropy against the ELBO per observed
    value) whatever share of a batch is unlabelled; 0 for a batch without a labelled series.
    No host synchronisation.

    Parameters
    ----------
    ce : torch.Tensor
        ``(B,)`` per-series cross-entropy, 0 for unlabelled series
        (:func:`weighted_cross_entropy`).
    labels : torch.Tensor
        ``(B,)`` class indices, -1 for unlabelled series.

    Returns
    -------
    torch.Tensor
        Scalar.

    Examples
    --------
    >>> labelled_mean(torch.tensor([1.0, 3.0, 0.0]), torch.tensor([0, 1, -1]))
    tensor(2.)
    """
    n = (labels.to(ce.device) != UNLABELLED).sum().clamp(min=1)
    return ce.sum() / n.to(ce.dtype)
