"""Recognition networks ``q(z_t0 | x)``: ODE-RNN and GRU-with-time-gaps, both run backwards.

Both encoders read a padded mini-batch ``(times (B, N), values (B, N, C), mask (B, N, C),
lengths (B,))`` from its last valid observation back to the first one, then to ``t0`` (which may
precede the first observation), and map the final hidden state to the mean and standard
deviation of a diagonal Gaussian over the initial latent state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentode.ode import evolve
from latentode.ode.odernn import GRUParams, event_schedule, odernn_scan
from latentode.ode.padded import hold_last

from .dynamics import LatentDynamics, mlp

__all__ = ["GRUUpdate", "ODERNNEncoder", "GRUEncoder"]

_SIGMA_FLOOR = 1e-4


def check_static(static: torch.Tensor | None, n_static: int, n_series: int) -> None:
    """Refuse static covariates that do not match an encoder built for ``n_static`` of them.

    Parameters
    ----------
    static : torch.Tensor or None
        ``(n_series, n_static)`` per-series covariates, or None.
    n_static : int
        How many covariates the encoder was built for (0: it takes none).
    n_series : int
        The batch's number of series.

    Raises
    ------
    ValueError
        If covariates are given to an encoder built without them, missing for one built with
        them, or of another shape than ``(n_series, n_static)``.
    """
    if (static is None) != (n_static == 0):
        raise ValueError(f"This encoder takes {n_static} static covariates; got "
                         f"{'none' if static is None else tuple(static.shape)}.")
    if static is not None and tuple(static.shape) != (n_series, n_static):
        raise ValueError(f"static must have shape {(n_series, n_static)}, got "
                         f"{tuple(static.shape)}.")


class GRUUpdate(nn.Module):
    """GRU-style state update with MLP gates (as in the ODE-RNN reference implementation).

    ``[u, r] = sigmoid(MLP_g([h, x]))``, ``n = MLP_n([r * h, x])``, ``h' = (1 - u) * n + u * h``;
    both MLPs have one tanh hidden layer of ``units``. The input halves of the first layers are
    applied to all time steps at once (:meth:`project_inputs`) so that each recurrent step only
    multiplies the hidden state.

    Parameters
    ----------
    hidden : int
        Hidden state size.
    n_inputs : int
        Input feature size.
    units : int
        Hidden width of the gate and candidate MLPs.
    """

    def __init__(self, hidden: int, n_inputs: int, units: int = 50) -> None:
        super().__init__()
        self.units = units
        self.x_proj = nn.Linear(n_inputs, 2 * units)
        self.gate_h = nn.Linear(hidden, units, bias=False)
        self.gate_out = nn.Linear(units, 2 * hidden)
        self.cand_h = nn.Linear(hidden, units, bias=False)
        self.cand_out = nn.Linear(units, hidden)

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., n_inputs)`` -> ``(..., 2 * units)`` input contributions (with biases)."""
        return self.x_proj(x)

    def forward(self, h: torch.Tensor, x_proj: torch.Tensor) -> torch.Tensor:
        """One update of ``h`` ``(B, hidden)`` given projected inputs ``(B, 2 * units)``."""
        xg, xc = x_proj.split(self.units, dim=-1)
        u, r = torch.sigmoid(self.gate_out(torch.tanh(xg + self.gate_h(h)))).chunk(2, dim=-1)
        n = self.cand_out(torch.tanh(xc + self.cand_h(r * h)))
        return n + u * (h - n)

    def params(self) -> GRUParams:
        """The weights in the layout of :func:`latentode.ode.odernn.odernn_scan`."""
        return GRUParams(self.gate_h.weight, self.gate_out.weight, self.gate_out.bias,
                         self.cand_h.weight, self.cand_out.weight, self.cand_out.bias)


class _BackwardEncoder(nn.Module):
    """Shared backward recurrence; subclasses define the inputs, evolution and head input."""

    rec_dim: int
    n_static: int = 0
    update: GRUUpdate
    head: nn.Module
    #: run the recurrence as one fused scan (:func:`latentode.ode.odernn.odernn_scan`); False
    #: runs the reference loop of autograd operations (same values and gradients, slower)
    fused: bool = True

    @property
    def state_dim(self) -> int:
        """Width of the states ``forward(..., return_states=True)`` returns, ``rec_dim``."""
        return self.rec_dim

    def _flow(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Linear layers of the hidden-state vector field (empty: no flow)."""
        return []

    def _flow_step(self) -> float | None:
        return None

    def _inputs(self, values: torch.Tensor, mask: torch.Tensor, gaps: torch.Tensor):
        raise NotImplementedError

    def _evolve(self, h: torch.Tensor, t_from: torch.Tensor, t_to: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _head_input(self, h: torch.Tensor, gap0: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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
            ``(B, N, C)`` observed values (0 where unobserved).
        mask : torch.Tensor
            ``(B, N, C)`` float mask, 1 where observed.
        lengths : torch.Tensor
            ``(B,)`` number of valid time points per series (``>= 1``).
        t0 : torch.Tensor, optional
            ``(B,)`` time of the latent initial state, ``<= times[:, 0]`` (default: the first
            observation time).
        static : torch.Tensor, optional
            ``(B, n_static)`` per-series covariates appended to the output head's input, so
            that they shape ``q(z_t0)`` (required when the encoder was built with
            ``n_static > 0``, refused otherwise).
        return_states : bool
            Also return the hidden state after each observation's update (what the recurrence
            saw of the series from that observation to its end), for a head that pools them
            (:class:`~latentode.nn.pooling.StatePooling`).

        Returns
        -------
        mu, sigma : torch.Tensor
            ``(B, latent_dim)`` mean and standard deviation of ``q(z_t0)``. Padded positions
            (index ``>= lengths[b]``) do not influence series ``b``.
        states, observed : torch.Tensor
            With ``return_states`` only: ``(L, B, rec_dim)`` hidden states and ``(L, B)`` bool,
            True where ``states[l, b]`` is the state just after an update of series ``b`` by an
            observation (one entry per valid time point with an observed channel; the others,
            flow substeps and padding, are False). ``L`` and the order of the entries along it
            depend on the batch and on ``fused``; the set of observed states of a series does
            not.
        """
        b, n, _ = values.shape
        values = torch.where(mask > 0, values, torch.zeros_like(values))
        lengths = lengths.to(device=times.device, dtype=torch.long)
        # forward-fill padded times so that padded intervals have zero length
        times, valid, _ = hold_last(times, lengths)  # valid: (B, N)
        t_next = torch.cat([times[:, 1:], times[:, -1:]], dim=1)  # (B, N); t_next[:, -1] = t[:, -1]
        gaps = t_next - times
        do_update = (valid & (mask > 0).any(-1)).unsqueeze(-1)  # (B, N, 1)
        x_proj = self.update.project_inputs(self._inputs(values, mask, gaps))

        first_t = times[:, 0]
        if t0 is None:
            t0 = first_t
        if self.fused:
            # events padded to a multiple of 32 on CUDA so that captured graphs are reused
            sched = event_schedule(times, lengths, do_update.squeeze(-1), t0, self._flow_step(),
                                   multiple=32 if times.device.type == "cuda" else 1)
            width = x_proj.shape[-1]
            idx = sched.index.t().unsqueeze(-1).expand(-1, -1, width)
            xe = x_proj.gather(1, idx).transpose(0, 1).contiguous()  # (L, B, 2 * units)
            out = odernn_scan(xe, sched, self._flow(), self.update.params(),
                              return_states=return_states)
            if return_states:
                h, states = out
                observed = sched.jump
            else:
                h = out
        else:
            h = values.new_zeros(b, self.rec_dim)
            seen = []
            for i in range(n - 1, -1, -1):
                h = self._evolve(h, t_next[:, i], times[:, i])
                h = torch.where(do_update[:, i], self.update(h, x_proj[:, i]), h)
                if return_states:
                    seen.append(h)
            if return_states:
                states = torch.stack(seen)                                # (N, B, rec_dim)
                observed = do_update.squeeze(-1).t().flip(0)              # (N, B)
            h = self._evolve(h, first_t, t0)
        head_in = self._head_input(h, first_t - t0)
        check_static(static, self.n_static, b)
        if static is not None:
            head_in = torch.cat([head_in, static.to(head_in.dtype)], dim=-1)
        out = self.head(head_in)
        mu, raw = out.chunk(2, dim=-1)
        if return_states:
            return mu, F.softplus(raw) + _SIGMA_FLOOR, states, observed
        return mu, F.softplus(raw) + _SIGMA_FLOOR


class ODERNNEncoder(_BackwardEncoder):
    """ODE-RNN encoder run backwards in time (Rubanova et al., 2019).

    Between observations the hidden state follows ``dh/dt = f_rec(h)`` (explicit Euler with
    maximum step ``step_size``, gradients by backpropagation through the solver); at each time
    with at least one observed channel it is updated by :class:`GRUUpdate` with input
    ``[x_i, mask_i]``. The state starts at 0 at each series' last observation and is finally
    evolved back to ``t0``.

    Parameters
    ----------
    n_channels : int
        Number of observed channels ``C``.
    latent_dim : int
        Size of the latent initial state.
    rec_dim : int
        Hidden state size.
    units : int
        Hidden width of the recurrent dynamics MLP and of the output head.
    n_layers : int
        Hidden layers of the recurrent dynamics MLP.
    gru_units : int
        Hidden width of the GRU gate / candidate MLPs.
    step_size : float
        Maximum Euler step in model time. The reference uses (time span of the data) / 50; with
        model time spanning about ``[0, 1]`` the default ``0.02`` matches it. The step does not
        depend on the mini-batch, so a series is encoded identically whatever it is batched with.
    n_static : int
        Per-series static covariates appended to the output head's input (0: none).
    """

    def __init__(
        self,
        n_channels: int,
        latent_dim: int,
        rec_dim: int = 40,
        units: int = 50,
        n_layers: int = 3,
        gru_units: int = 50,
        step_size: float = 0.02,
        n_static: int = 0,
    ) -> None:
        super().__init__()
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size!r}.")
        self.rec_dim = rec_dim
        self.n_static = int(n_static)
        self.step_size = float(step_size)
        self.rec_dynamics = LatentDynamics(rec_dim, n_layers, units)
        self.update = GRUUpdate(rec_dim, 2 * n_channels, gru_units)
        self.head = mlp(rec_dim + self.n_static, 2 * latent_dim, 1, units)

    @classmethod
    def from_config(
        cls, n_channels: int, latent_dim: int, rec_dim: int, *, units: int, rec_layers: int,
        gru_units: int, enc_step_size: float, n_static: int = 0, mtan_ref_points: int = 64,
        mtan_embed_dim: int | None = None,
    ) -> ODERNNEncoder:
        """Build from :class:`~latentode.nn.LatentODE`'s options (the encoder registry's call;
        ``mtan_ref_points`` and ``mtan_embed_dim`` are the attention encoder's, not used here)."""
        return cls(n_channels, latent_dim, rec_dim, units, rec_layers, gru_units, enc_step_size,
                   n_static=n_static)

    def _inputs(self, values, mask, gaps):
        return torch.cat([values, mask], dim=-1)

    def _evolve(self, h, t_from, t_to):
        return evolve(self.rec_dynamics, h, t_from, t_to, step_size=self.step_size,
                      method="euler")

    def _flow(self):
        return self.rec_dynamics.tanh_mlp_layers()

    def _flow_step(self):
        return self.step_size

    def _head_input(self, h, gap0):
        return h


class GRUEncoder(_BackwardEncoder):
    """GRU encoder with time gaps as inputs (the RNN baseline of Rubanova et al., 2019).

    Identical to :class:`ODERNNEncoder` without the continuous evolution: the hidden state is held
    constant between observations and the gap to the next observation, ``t_{i+1} - t_i``, is an
    extra input feature. The gap between the first observation and ``t0`` is appended to the
    head's input.

    Parameters
    ----------
    n_channels, latent_dim, rec_dim, units, gru_units, n_static : int
        As for :class:`ODERNNEncoder`.
    """

    def __init__(
        self,
        n_channels: int,
        latent_dim: int,
        rec_dim: int = 40,
        units: int = 50,
        gru_units: int = 50,
        n_static: int = 0,
    ) -> None:
        super().__init__()
        self.rec_dim = rec_dim
        self.n_static = int(n_static)
        self.update = GRUUpdate(rec_dim, 2 * n_channels + 1, gru_units)
        self.head = mlp(rec_dim + 1 + self.n_static, 2 * latent_dim, 1, units)

    @classmethod
    def from_config(
        cls, n_channels: int, latent_dim: int, rec_dim: int, *, units: int, rec_layers: int,
        gru_units: int, enc_step_size: float, n_static: int = 0, mtan_ref_points: int = 64,
        mtan_embed_dim: int | None = None,
    ) -> GRUEncoder:
        """Build from :class:`~latentode.nn.LatentODE`'s options (``rec_layers`` and
        ``enc_step_size`` are not used: the state does not evolve between observations;
        ``mtan_ref_points`` and ``mtan_embed_dim`` are the attention encoder's)."""
        return cls(n_channels, latent_dim, rec_dim, units, gru_units, n_static=n_static)

    def _inputs(self, values, mask, gaps):
        return torch.cat([values, mask, gaps.unsqueeze(-1)], dim=-1)

    def _evolve(self, h, t_from, t_to):
        return h

    def _head_input(self, h, gap0):
        return torch.cat([h, gap0.unsqueeze(-1)], dim=-1)
