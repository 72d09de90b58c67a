"""Whether calling a module would run a hook: the one place that reads torch's hook dictionaries.

PyTorch has no public query for registered hooks, so this reads the dictionaries its
``Module.__call__`` reads. The fast paths that skip module calls (the latent field's direct layer
calls, the ODE core's fused fixed-step solve) are taken only where this says no hook would run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from torch import nn

__all__ = ["hook_dicts_known", "hooked"]

_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks",
                 "_global_backward_hooks", "_global_backward_pre_hooks")
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                 "_backward_pre_hooks")


@functools.cache
def hook_dicts_known() -> bool:
    """Whether this torch keeps its hooks in the dictionaries :func:`hooked` reads (asked once
    per process)."""
    from torch.nn.modules import module as _module

    probe = nn.Identity()
    return (all(isinstance(getattr(_module, n, None), dict) for n in _GLOBAL_HOOKS)
            and all(isinstance(getattr(probe, n, None), dict) for n in _MODULE_HOOKS))


def hooked(modules: Iterable[nn.Module]) -> bool:
    """Whether calling one of ``modules`` would run a hook (its own or a global one).

    Should a torch version name its hook dictionaries otherwise, the answer is True (call the
    modules): a fast path is taken only where it is known to skip nothing.

    Parameters
    ----------
    modules : iterable of torch.nn.Module
        The modules a fast path would not call.

    Returns
    -------
    bool
    """
    from torch.nn.modules import module as _module

    if not hook_dicts_known():
        return True
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks
            or _module._global_backward_hooks or _module._global_backward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               or m._backward_pre_hooks for m in modules)
