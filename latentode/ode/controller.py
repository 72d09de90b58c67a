"""Step-size control for the adaptive methods: error norm, initial step, step update."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .stepper import System


def error_ratio(
    err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float, atol: float
) -> torch.Tensor:
    """RMS over the state of ``err / (atol + rtol * max(|y0|, |y1|))``, one value per series."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return (err / scale).pow(2).mean(dim=-1).sqrt()


def initial_step(
    system: System,
    s0: torch.Tensor,
    y0: torch.Tensor,
    f0: torch.Tensor,
    order: int,
    rtol: float,
    atol: float,
) -> torch.Tensor:
    """Hairer, Norsett & Wanner's starting step-size heuristic, per series (2 evaluations)."""
    scale = atol + rtol * y0.abs()
    d0 = (y0 / scale).pow(2).mean(-1).sqrt()
    d1 = (f0 / scale).pow(2).mean(-1).sqrt()
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    y1 = y0 + h0.unsqueeze(-1) * f0
    f1 = system(s0 + h0, y1)
    d2 = ((f1 - f0) / scale).pow(2).mean(-1).sqrt() / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(
        dmax <= 1e-15,
        torch.clamp(h0 * 1e-3, min=1e-6),
        (0.01 / dmax.clamp(min=1e-15)).pow(1.0 / (order + 1)),
    )
    return torch.minimum(100 * h0, h1)


@dataclass(frozen=True)
class IController:
    """Integral step-size controller ``h * clip(safety * err**(-1/order), min, max)``."""

    order: int
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2

    def update(self, h: torch.Tensor, ratio: torch.Tensor, accept: torch.Tensor) -> torch.Tensor:
        """New step sizes from the error ratios (NaN ratios shrink the step by ``dfactor``)."""
        finite = torch.isfinite(ratio)
        r = torch.where(finite, ratio, torch.ones_like(ratio)).clamp(min=1e-10)
        factor = self.safety * r.pow(-1.0 / self.order)
        factor = torch.where(accept, factor.clamp(max=self.ifactor), factor.clamp(max=1.0))
        shrink = torch.full_like(r, self.dfactor)
        factor = torch.where(finite, factor.clamp(min=self.dfactor), shrink)
        return h * factor
