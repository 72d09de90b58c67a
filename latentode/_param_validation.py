"""Declarative parameter constraints, in the style of scikit-learn's ``_parameter_constraints``.

An estimator declares, once, a table ``{parameter: [constraint, ...]}``; a value is valid when
it satisfies any constraint of its list, and :func:`validate_params` raises one
:class:`ValueError` that names the parameter, says what it must be and shows the value::

    latent_dim must be an integer >= 1, got 0.
    forecast_split must be None or lie in (0, 1), got 1.0.
    kl_warmup must be None, a non-negative number of epochs, 'exponential' or a callable, got -2.

scikit-learn's own ``sklearn.utils._param_validation`` is private API and words its errors
differently (``The 'latent_dim' parameter of LatentODERegressor must be an int in the range
[1, inf). Got 0 instead.``), so latentode keeps this small equivalent: the wording of its errors
is part of the estimator's behaviour (``load`` reports them too).

Constraints
-----------
``None``
    The value ``None``.
:class:`Interval`
    A real number or an integer (bools refused, NaN and inf refused) within bounds.
:class:`Options`
    One of a few strings.
:class:`Pair`
    A pair ``(low, high)`` (tuple or list) of numbers within an :class:`Interval`,
    ``low <= high``.
:class:`Boolean`, :class:`IsCallable`, :class:`InstanceOf`
    ``True``/``False`` (numpy bools too), any callable, instances of a class.
:class:`CheckedBy`
    The parameter's check is owned elsewhere: a function that raises the ValueError itself
    (e.g. :func:`latentode.utils.resolve_n_jobs`, which also runs at every call).
``"no_validation"``
    Not checked here (say where in a comment).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "Boolean",
    "CheckedBy",
    "Constraint",
    "InstanceOf",
    "Interval",
    "IsCallable",
    "Options",
    "Pair",
    "describe",
    "validate_params",
]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Interval:
    """A number of ``type`` between ``low`` and ``high`` (None: unbounded), finite, not a bool.

    Parameters
    ----------
    type : {numbers.Integral, numbers.Real}
        Required type (numpy scalars count).
    low, high : float or None
        Bounds; None leaves that side open.
    closed : {"left", "right", "both", "neither"}, default="both"
        Which bounds are included.
    description : str or None, default=None
        The phrase after "must" in the error, e.g. ``"be a positive float"``; by default one is
        derived from the bounds (``"be an integer >= 1"``, ``"be a positive finite number"``,
        ``"lie in [0, 1)"``).
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: Literal["left", "right", "both", "neither"] = "both"
    description: str | None = None

    def __post_init__(self) -> None:
        if self.type not in (numbers.Integral, numbers.Real):
            raise TypeError(f"type must be numbers.Integral or numbers.Real, got {self.type!r}.")
        if self.closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be 'left', 'right', 'both' or 'neither', "
                             f"got {self.closed!r}.")

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.type):
            return False
        if self.type is numbers.Real:
            try:
                if not math.isfinite(value):
                    return False
            except OverflowError:  # an int too large for a float
                return False
        left = self.closed in ("left", "both")
        right = self.closed in ("right", "both")
        if self.low is not None and (value < self.low or (not left and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (not right and value == self.high)):
            return False
        return True

    def phrase(self) -> str:
        if self.description is not None:
            return self.description
        left = self.closed in ("left", "both")
        right = self.closed in ("right", "both")
        if self.type is numbers.Integral:
            if self.low is None and self.high is None:
                return "be an int"
            if self.high is None:
                return f"be an integer {'>=' if left else '>'} {_fmt(self.low)}"
            if self.low is None:
                return f"be an integer {'<=' if right else '<'} {_fmt(self.high)}"
        elif self.high is None and self.low == 0:
            return f"be a {'non-negative' if left else 'positive'} finite number"
        elif self.low is None and self.high is None:
            return "be a finite number"
        lo = "-inf" if self.low is None else _fmt(self.low)
        hi = "inf" if self.high is None else _fmt(self.high)
        return f"lie in {'[' if left else '('}{lo}, {hi}{']' if right else ')'}"


@dataclass(frozen=True)
class Options:
    """One of the strings ``options``."""

    options: tuple[str, ...]

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def phrase(self) -> str:
        if len(self.options) == 1:
            return f"be {self.options[0]!r}"
        return f"be one of {tuple(self.options)!r}"


@dataclass(frozen=True)
class Pair:
    """A pair ``(low, high)``, a tuple or a list, of numbers within ``interval``, ``low <= high``.

    Parameters
    ----------
    interval : Interval
        What each of the two numbers must be.
    """

    interval: Interval

    def is_satisfied_by(self, value: Any) -> bool:
        return (isinstance(value, (tuple, list)) and len(value) == 2
                and all(self.interval.is_satisfied_by(v) for v in value)
                and value[0] <= value[1])

    def phrase(self) -> str:
        return f"be a pair (low, high) with low <= high whose values {self.interval.phrase()}"


@dataclass(frozen=True)
class Boolean:
    """``True`` or ``False`` (numpy bools included; 0 and 1 refused)."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def phrase(self) -> str:
        return "be True or False"


@dataclass(frozen=True)
class IsCallable:
    """Any callable."""

    def is_satisfied_by(self, value: Any) -> bool:
        return callable(value)

    def phrase(self) -> str:
        return "be a callable"


@dataclass(frozen=True)
class InstanceOf:
    """An instance of ``cls``, described as ``description`` (e.g. ``"a numpy RandomState"``)."""

    cls: type
    description: str

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.cls)

    def phrase(self) -> str:
        return f"be {self.description}"


@dataclass(frozen=True)
class CheckedBy:
    """The parameter is checked by ``check(value)``, which raises its own ValueError.

    For parameters whose check (and its wording) belongs to the code that uses the value, so
    that the rule is written once. Must be the only constraint of its parameter.
    """

    check: Callable[[Any], Any]


Constraint = None | Interval | Options | Pair | Boolean | IsCallable | InstanceOf | CheckedBy


def describe(constraints: Sequence[Constraint]) -> str:
    """The phrase after "must" for ``constraints``: ``"be None or lie in (0, 1)"``.

    Consecutive phrases with the same verb share it: ``be None, an int or a numpy RandomState``.
    """
    parts = []
    verb = None
    for c in constraints:
        text = "be None" if c is None else c.phrase()  # type: ignore[union-attr]
        this = "lie in" if text.startswith("lie in ") else text.split(" ", 1)[0]
        parts.append(text[len(this) + 1:] if this == verb else text)
        verb = this
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def validate_params(
    constraints: Mapping[str, Sequence[Constraint] | Literal["no_validation"]],
    params: Mapping[str, Any],
) -> None:
    """Check ``params`` against ``constraints``, in the table's order.

    Parameters
    ----------
    constraints : mapping
        ``{name: [constraint, ...]}`` or ``{name: "no_validation"}``; every key of ``params``
        must have an entry (a parameter left out of the table is a programming error).
    params : mapping
        ``{name: value}``, e.g. ``estimator.get_params(deep=False)``.

    Raises
    ------
    ValueError
        At the first parameter that satisfies none of its constraints:
        ``"{name} must {describe(constraints)}, got {value!r}."`` (or the error of its
        :class:`CheckedBy` function).
    KeyError
        If a parameter has no entry in ``constraints``.
    """
    missing = [name for name in params if name not in constraints]
    if missing:
        raise KeyError(f"parameters without constraints: {missing}")
    for name, allowed in constraints.items():
        if name not in params or allowed == "no_validation":
            continue
        value = params[name]
        if len(allowed) == 1 and isinstance(allowed[0], CheckedBy):
            allowed[0].check(value)
            continue
        if any(value is None if c is None else c.is_satisfied_by(value)  # type: ignore[union-attr]
               for c in allowed):
            continue
        raise ValueError(f"{name} must {describe(allowed)}, got {value!r}.")
