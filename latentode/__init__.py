"""latentode: Latent ODEs for irregularly sampled time series, behind scikit-learn estimators.

Public API
----------
LatentODERegressor
    scikit-learn style estimator that interpolates and forecasts long-format DataFrames.
LatentODEClassifier
    scikit-learn style classifier of whole series (one label per series).
odeint, ODESolveError
    The batched ODE solver used by the models, and the error it raises.
plot_forecast
    One series' observations, predictive mean, quantile band and forecast region (needs
    matplotlib: ``pip install latentode[plot]``; imported only when used).

Attributes are imported lazily (PEP 562), so ``import latentode`` stays cheap and a sub-package
that fails to import only breaks the names that need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:  # installed metadata is the single source of truth for the version
    from importlib.metadata import PackageNotFoundError, version

    #: the installed version of latentode (PEP 440)
    __version__ = version("latentode")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.1.0.dev0"

if TYPE_CHECKING:  # pragma: no cover
    from .classifier import LatentODEClassifier
    from .estimator import LatentODERegressor
    from .ode import ODESolveError, odeint
    from .plotting import plot_forecast

# name -> (module, attribute)
_LAZY = {
    "LatentODERegressor": ("latentode.estimator", "LatentODERegressor"),
    "LatentODEClassifier": ("latentode.classifier", "LatentODEClassifier"),
    "odeint": ("latentode.ode", "odeint"),
    "ODESolveError": ("latentode.ode", "ODESolveError"),
    "plot_forecast": ("latentode.plotting", "plot_forecast"),
}

__all__ = ["LatentODERegressor", "LatentODEClassifier", "odeint", "ODESolveError",
           "plot_forecast", "__version__"]


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'latentode' has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if name == "plot_forecast" and exc.name == module_name:
            raise AttributeError(f"module 'latentode' has no attribute {name!r}") from None
        raise
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module 'latentode' has no attribute {name!r}") from None
    globals()[name] = value  # cache: later look-ups bypass __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
