"""Validation scores of a classifier, computed on the device (torch only).

:func:`evaluate_classifier` scores the probabilities that
:meth:`latentode.LatentODEClassifier.predict_proba` would give the validation series (the
softmax of :meth:`latentode.nn.LatentODE.classify`, eval mode, no gradients) by their
cross-entropy and, for two classes, the area under the ROC curve (:func:`binary_roc_auc`), with
one host synchronisation per call whatever the number of batches. :func:`fit_model` monitors
them with ``val_metric="log_loss"`` or ``"roc_auc"``. The option sets of the estimators'
``scoring`` (:data:`REGRESSOR_SCORINGS`, :data:`CLASSIFIER_SCORINGS`) live here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from latentode.batch import UNLABELLED, Batch
from latentode.nn.classifier import weighted_cross_entropy

from .objective import evaluation_setup

__all__ = ["VAL_METRICS", "REGRESSOR_SCORINGS", "CLASSIFIER_SCORINGS", "binary_roc_auc",
           "evaluate_classifier"]

#: what :func:`~latentode.training.fit_model` can monitor on the validation series: its loss
#: (the training objective), the mean squared error of the point predictions (``"mse"``, see
#: :func:`~latentode.training.evaluate_loss`), or, for a model with a classifier, the
#: cross-entropy of the predicted class probabilities (``"log_loss"``) or their AUC-ROC
#: (``"roc_auc"``, two classes)
VAL_METRICS = ("loss", "mse", "log_loss", "roc_auc")

#: the ``scoring`` options of :class:`~latentode.LatentODERegressor`: what it predicts is scored
#: by its objective or by the error of its point predictions
REGRESSOR_SCORINGS = ("loss", "mse")

#: the ``scoring`` options of :class:`~latentode.LatentODEClassifier`: its class probabilities'
#: scores, or the objective (the reconstruction error says nothing of the classes, so no "mse")
CLASSIFIER_SCORINGS = ("loss", "log_loss", "roc_auc")


def binary_roc_auc(scores: torch.Tensor, labels: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Area under the ROC curve of ``scores`` for the binary ``labels``, without a host sync.

    The Mann-Whitney statistic with tied scores counting one half (as
    :func:`sklearn.metrics.roc_auc_score`): ``(sum of the positives' mid-ranks - P (P + 1) / 2)
    / (P N)`` for ``P`` positives and ``N`` negatives; the mid-ranks come from two
    :func:`torch.searchsorted` calls on the sorted scores, so nothing waits for the device.

    Parameters
    ----------
    scores : torch.Tensor
        ``(n,)`` finite scores (e.g. the probability of the positive class); larger means more
        likely positive.
    labels : torch.Tensor
        ``(n,)`` labels, 1 (or True) for the positive class, 0 for the negative.
    mask : torch.Tensor, optional
        ``(n,)`` bool, the entries to score (default: all); the others (e.g. unlabelled
        series) are left out exactly, whatever their score and label (they are ranked above
        every scored entry, which leaves the scored entries' ranks unchanged).

    Returns
    -------
    torch.Tensor
        Scalar AUC in ``[0, 1]`` (float64); NaN when one class is absent.

    Examples
    --------
    >>> binary_roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    tensor(0.7500, dtype=torch.float64)
    >>> binary_roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8, 0.2]), torch.tensor([0, 0, 1, 1, -1]),
    ...                torch.tensor([True, True, True, True, False]))
    tensor(0.7500, dtype=torch.float64)
    """
    s = scores.reshape(-1).to(torch.float64)
    pos = labels.reshape(-1).to(device=s.device, dtype=torch.float64)
    if mask is not None:
        keep = mask.reshape(-1).to(device=s.device, dtype=torch.bool)
        s = torch.where(keep, s, torch.full_like(s, math.inf))
        pos = torch.where(keep, pos, torch.zeros_like(pos))
        n_scored = keep.sum().to(torch.float64)
    else:
        n_scored = torch.tensor(float(pos.numel()), dtype=torch.float64, device=s.device)
    ordered = torch.sort(s).values
    low = torch.searchsorted(ordered, s, right=False)
    high = torch.searchsorted(ordered, s, right=True)
    mid_rank = (low + high + 1).to(torch.float64) / 2.0  # 1-based, ties share their mean rank
    n_pos = pos.sum()
    n_neg = n_scored - n_pos
    return ((mid_rank * pos).sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def evaluate_classifier(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Cross-entropy and AUC-ROC of a model's class probabilities over labelled batches.

    The probabilities are ``softmax(model.classify(batch))`` in eval mode without gradients
    (what :meth:`~latentode.LatentODEClassifier.predict_proba` returns; no sampling noise).

    Parameters
    ----------
    model : LatentODE
        A model with a classifier (``n_classes >= 2``).
    batches : iterable of Batch
        Batches with ``labels`` (class indices; series labelled
        :data:`~latentode.batch.UNLABELLED` are left out of both scores) and optionally
        ``weights`` (per series).
    device, dtype : optional
        Where and in which floating dtype to evaluate (default: the model's).

    Returns
    -------
    dict
        ``"log_loss"``: ``sum_b w_b * -log p_b[label_b] / sum_b w_b`` (``w_b`` the series'
        ``Batch.weights``, default 1), i.e. :func:`sklearn.metrics.log_loss` with those sample
        weights; ``"roc_auc"``: :func:`binary_roc_auc` of the probability of class 1 for a
        two-class model (NaN when the batches hold one class only, or more than two classes);
        ``"n_series"``, the number of labelled series scored. Python floats after one host
        synchronisation; NaN without labelled series.

    Raises
    ------
    ValueError
        If the model has no classifier or a batch has no labels.
    """
    if getattr(model, "classifier", None) is None:
        raise ValueError("evaluate_classifier needs a model with a classifier (n_classes >= 2).")
    was_training = model.training
    model.eval()
    try:
        device, dtype, acc_dtype = evaluation_setup(model, device, dtype)
        # weighted CE sum, weight sum, labelled series
        acc = torch.zeros(3, device=device, dtype=acc_dtype)
        probs: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        with torch.no_grad():
            for batch in batches:
                if batch.labels is None:
                    raise ValueError("evaluate_classifier needs batches with labels.")
                batch = batch.to(device, dtype)
                logits = model.classify(batch)
                label = batch.labels.to(device=logits.device, dtype=torch.long)
                known = label != UNLABELLED
                weight = (torch.ones_like(label, dtype=acc_dtype) if batch.weights is None
                          else batch.weights.to(device=logits.device, dtype=acc_dtype))
                weight = torch.where(known, weight, torch.zeros_like(weight))
                ce = weighted_cross_entropy(logits.to(acc_dtype), label, weight)
                acc += torch.stack([ce.sum(), weight.sum(), known.sum().to(acc_dtype)])
                if logits.shape[-1] == 2:
                    probs.append(torch.softmax(logits, dim=-1)[:, 1])
                    labels.append(label)
        if not probs:
            auc = acc.new_tensor(math.nan)
        else:
            label_all = torch.cat(labels)
            auc = binary_roc_auc(torch.cat(probs), label_all,
                                 label_all != UNLABELLED).to(acc_dtype)
        ce_sum, w_sum, n, auc_value = torch.cat([acc, auc.view(1)]).tolist()  # the one sync
    finally:
        model.train(was_training)
    return {"log_loss": ce_sum / w_sum if w_sum > 0 else math.nan,
            "roc_auc": auc_value if n > 0 else math.nan, "n_series": float(n)}
