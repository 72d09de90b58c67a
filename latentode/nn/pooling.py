"""Pooling of the encoder's hidden states over a series, a classifier head's input (torch only).

The recognition network (:mod:`latentode.nn.encoder`) updates its hidden state at every
observation of a series; the Latent ODE keeps only the last one, mapped to the posterior of
the initial latent state ``z_t0``, which is trained to reconstruct the series. Classifiers of
irregular series that read the whole encoded sequence (mTAN's GRU over its latent sequence,
GRU-D's states) see more of it. :class:`StatePooling` summarises the states after each
observation's update by their mean and by an attention-weighted average with a learned query
(additive attention, Bahdanau et al., 2015), both over the observed entries only, so that
padding and flow substeps do not count. ``LatentODE(head_inputs="latent+summary+pooled")``
feeds its output to the classifier beside ``z_t0``; the classifier's gradient reaches the
encoder through it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StatePooling"]


class StatePooling(nn.Module):
    """Masked mean and attention pooling of hidden states ``(L, B, dim)`` -> ``(B, 2 * dim)``.

    For series ``b`` with observed entries ``O_b = {l : observed[l, b]}``: ``mean_b =
    sum_{l in O_b} h_lb / |O_b|`` and ``att_b = sum_{l in O_b} a_lb h_lb`` with ``a_b =
    softmax_{l in O_b}(s_lb)``, ``s_lb = q . tanh(W h_lb + c)`` (``W``: ``units x dim``, ``q``
    the learned query). The output is ``[mean_b, att_b]``. Entries outside ``O_b`` (padding,
    flow substeps) have no influence on series ``b`` whatever they hold; a series with no
    observed entry gets zeros. Both parts are invariant to the order of the entries along
    ``L``.

    Parameters
    ----------
    dim : int
        Size of each hidden state.
    units : int
        Width of the attention's key projection ``W``.

    Attributes
    ----------
    n_features : int
        ``2 * dim``, the width of the output.
    """

    def __init__(self, dim: int, units: int = 50) -> None:
        super().__init__()
        if dim < 1 or units < 1:
            raise ValueError(f"dim and units must be >= 1, got {dim} and {units}.")
        self.dim = int(dim)
        self.key = nn.Linear(self.dim, int(units))
        self.query = nn.Linear(int(units), 1, bias=False)

    @property
    def n_features(self) -> int:
        """Width of the output, ``2 * dim``."""
        return 2 * self.dim

    def forward(self, states: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Pool ``states (L, B, dim)`` over the entries where ``observed (L, B)`` is True.

        Returns
        -------
        torch.Tensor
            ``(B, 2 * dim)``: the masked mean, then the attention-pooled state.

        Examples
        --------
        >>> pool = StatePooling(2)
        >>> h = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]], [[9.0, 9.0]]])   # (L=3, B=1, 2)
        >>> pool(h, torch.tensor([[True], [True], [False]]))[0, :2]        # the mean of two
        tensor([2., 1.])
        """
        if states.dim() != 3 or tuple(observed.shape) != tuple(states.shape[:2]):
            raise ValueError(f"states must be (L, B, dim) and observed (L, B); got "
                             f"{tuple(states.shape)} and {tuple(observed.shape)}.")
        obs = observed.to(device=states.device, dtype=torch.bool)
        zero = states.new_zeros(())
        h = torch.where(obs.unsqueeze(-1), states, zero)       # padding cannot leak (NaN incl.)
        count = obs.sum(0).clamp(min=1).to(states.dtype).unsqueeze(-1)      # (B, 1)
        mean = h.sum(0) / count
        score = self.query(torch.tanh(self.key(h))).squeeze(-1)             # (L, B)
        score = torch.where(obs, score, torch.tensor(float("-inf"), dtype=score.dtype,
                                                     device=score.device))
        any_obs = obs.any(0)                                                # (B,)
        score = torch.where(any_obs.unsqueeze(0), score, zero)   # no observation: no NaN
        weight = torch.softmax(score, dim=0) * obs.to(states.dtype)
        att = (weight.unsqueeze(-1) * h).sum(0)
        return torch.cat([mean, att], dim=-1)
