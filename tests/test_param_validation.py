"""The estimator's parameter table (``LatentODERegressor._parameter_constraints``) and the small
constraint language behind it (:mod:`latentode._param_validation`)."""

from __future__ import annotations

import ast
import inspect
import math
import numbers
import re

import numpy as np
import pytest

from latentode import LatentODERegressor
from latentode._param_validation import (
    Boolean,
    CheckedBy,
    InstanceOf,
    Interval,
    IsCallable,
    Options,
    describe,
    validate_params,
)
from latentode.nn import OBS_WEIGHTINGS
from latentode.nn.model import ENCODERS
from latentode.ode import GRADIENTS, METHODS

TABLE = LatentODERegressor._parameter_constraints


class _BadType:
    """A value no parameter accepts."""


def test_table_declares_every_parameter_once() -> None:
    # in the order of __init__'s signature, which is the order errors are looked for in
    signature = list(inspect.signature(LatentODERegressor).parameters)
    assert list(TABLE) == signature


def test_option_sets_are_the_owning_layers() -> None:
    assert TABLE["solver"] == [Options(METHODS)] and "bosh3" in METHODS
    assert TABLE["encoder"] == [Options(ENCODERS)]
    assert TABLE["gradient"] == [Options(GRADIENTS)]
    assert TABLE["obs_weighting"] == [Options(OBS_WEIGHTINGS)]


def test_defaults_are_valid() -> None:
    LatentODERegressor()._validate_params()


@pytest.mark.parametrize("name", [n for n, c in TABLE.items() if c != "no_validation"])
def test_every_checked_parameter_refuses_a_wrong_type(name: str) -> None:
    est = LatentODERegressor(**{name: _BadType()})
    with pytest.raises(ValueError, match=rf"^{name} must .*got <.*_BadType object"):
        est._validate_params()


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(latent_dim=0), "latent_dim must be an integer >= 1, got 0."),
        (dict(n_layers=-1), "n_layers must be an integer >= 0, got -1."),
        (dict(rec_dim=2.0), "rec_dim must be an integer >= 1, got 2.0."),
        (dict(patience=True), "patience must be an integer >= 1, got True."),
        (dict(lr=-5), "lr must be a positive finite number, got -5."),
        (dict(rtol=float("nan")), "rtol must be a positive finite number, got nan."),
        (dict(atol=10**400), "atol must be a positive finite number, got " + str(10**400) + "."),
        (dict(step_size=0.0), "step_size must be None or a positive finite number, got 0.0."),
        (dict(encoder="lstm"), "encoder must be one of ('odernn', 'gru', 'mtan'), got 'lstm'."),
        (dict(solver="rk45"),
         "solver must be one of ('dopri5', 'bosh3', 'rk4', 'euler'), got 'rk45'."),
        (dict(early_stopping="yes"), "early_stopping must be True or False, got 'yes'."),
        (dict(calibrate=1), "calibrate must be True or False, got 1."),
        (dict(obs_dropout=1.0), "obs_dropout must lie in [0, 1), got 1.0."),
        (dict(validation_fraction=-0.1), "validation_fraction must lie in [0, 1), got -0.1."),
        (dict(forecast_split=0), "forecast_split must be None or lie in (0, 1), got 0."),
        (dict(lr_decay=1.5), "lr_decay must be None or lie in (0, 1], got 1.5."),
        (dict(kl_warmup=-2), "kl_warmup must be None, a non-negative number of epochs, "
                             "'exponential' or a callable, got -2."),
        (dict(obs_std="fixed"), "obs_std must be 'learned' or a positive float, got 'fixed'."),
        (dict(random_state="seed"),
         "random_state must be None, an int or a numpy RandomState, got 'seed'."),
        (dict(n_jobs=0), "n_jobs must be None (one thread), a positive number of threads, or -1 "
                         "for every core (-2 all but one, ...), got 0."),
    ],
)
def test_messages(params: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        LatentODERegressor(**params)._validate_params()
    assert str(info.value) == message


@pytest.mark.parametrize(
    "params",
    [dict(latent_dim=np.int64(3)), dict(lr=np.float32(0.1)), dict(lr=1), dict(rtol=1e-12),
     dict(step_size=None), dict(step_size=0.5), dict(lr_decay=1.0), dict(lr_decay=None),
     dict(obs_dropout=0.0), dict(validation_fraction=0), dict(forecast_split=0.5),
     dict(kl_warmup=None), dict(kl_warmup=0), dict(kl_warmup="exponential"),
     dict(kl_warmup=lambda epoch: 1.0), dict(obs_std=0.05), dict(early_stopping=np.True_),
     dict(random_state=np.random.RandomState(0)), dict(random_state=-3), dict(n_jobs=-1),
     dict(max_epochs=0), dict(verbose=2), dict(solver="bosh3"), dict(device="tpu")],
)
def test_accepted(params: dict) -> None:
    LatentODERegressor(**params)._validate_params()  # device is checked by fit (resolve_device)


def test_device_is_checked_when_fit_resolves_it() -> None:
    import pandas as pd

    df = pd.DataFrame({"id": [0, 0], "t": [0.0, 1.0], "x": [0.0, 1.0]})
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda'"):
        LatentODERegressor(device="tpu", max_epochs=0, verbose=0).fit(df)


@pytest.mark.parametrize(
    "interval, inside, outside",
    [
        (Interval(numbers.Real, 0, 1, closed="both"), [0, 0.5, 1], [-1e-9, 1 + 1e-9]),
        (Interval(numbers.Real, 0, 1, closed="neither"), [1e-9, 0.999], [0, 1, 0.0, 1.0]),
        (Interval(numbers.Real, 0, 1, closed="left"), [0, 0.5], [1, -0.1]),
        (Interval(numbers.Real, 0, 1, closed="right"), [1, 0.5], [0, 1.1]),
        (Interval(numbers.Real, None, None), [-1e300, 0, 7], [math.inf, -math.inf, math.nan]),
        (Interval(numbers.Integral, 2, None, closed="left"), [2, np.int32(9), 10**400],
         [1, 2.0, np.float64(3.0), True, np.True_, "3"]),
        (Interval(numbers.Integral, None, -1, closed="right"), [-1, -5], [0, 3]),
    ],
)
def test_interval_bounds(interval: Interval, inside: list, outside: list) -> None:
    assert all(interval.is_satisfied_by(v) for v in inside)
    assert not any(interval.is_satisfied_by(v) for v in outside)


def test_describe_shares_the_verb_and_joins_with_or() -> None:
    assert describe([None, Interval(numbers.Real, 0, 1, closed="neither")]) == (
        "be None or lie in (0, 1)")
    assert describe([None, Interval(numbers.Integral), InstanceOf(np.random.RandomState,
                                                                  "a numpy RandomState")]) == (
        "be None, an int or a numpy RandomState")
    assert describe([Options(("a", "b")), Boolean(), IsCallable()]) == (
        "be one of ('a', 'b'), True or False or a callable")
    assert describe([Interval(numbers.Real, None, 2, closed="right")]) == "lie in (-inf, 2]"
    assert describe([Interval(numbers.Real, 0, None, closed="left")]) == (
        "be a non-negative finite number")


def test_validate_params_refuses_an_undeclared_parameter_and_skips_unchecked_ones() -> None:
    with pytest.raises(KeyError, match="'b'"):
        validate_params({"a": [Boolean()]}, {"a": True, "b": 1})
    validate_params({"a": "no_validation"}, {"a": _BadType()})
    seen = []
    validate_params({"a": [CheckedBy(seen.append)]}, {"a": 5})
    assert seen == [5]


def test_bad_constraints_are_refused() -> None:
    with pytest.raises(TypeError):
        Interval(float, 0, 1)
    with pytest.raises(ValueError):
        Interval(numbers.Real, 0, 1, closed="open")


def _documented_types() -> dict[str, str]:
    """``{name: type line}`` of the class docstring's Parameters section (``a, b : float``)."""
    doc = LatentODERegressor.__doc__ or ""
    section = doc.split("    Parameters\n    ----------\n", 1)[1].split("\n    Attributes\n", 1)[0]
    out = {}
    for line in section.splitlines():
        m = re.match(r"^    (\w+(?:, \w+)*) : (.+)$", line)
        if m:
            out.update({name: m.group(2) for name in m.group(1).split(", ")})
    return out


def test_docstring_documents_every_parameter() -> None:
    assert sorted(_documented_types()) == sorted(TABLE)


@pytest.mark.parametrize("name", [n for n, c in TABLE.items()
                                  if c != "no_validation" and isinstance(c[0], Options)
                                  and len(c) == 1])
def test_docstring_lists_exactly_the_accepted_options(name: str) -> None:
    # e.g. ``solver : {"dopri5", "bosh3", "rk4", "euler"}`` must be ode.METHODS
    braces = re.match(r"^\{(.*)\}", _documented_types()[name])
    assert braces, _documented_types()[name]
    assert re.findall(r'"(\w+)"', braces.group(1)) == list(TABLE[name][0].options)


def test_docstring_defaults_are_the_signature_defaults() -> None:
    defaults = {k: p.default for k, p in inspect.signature(LatentODERegressor).parameters.items()}
    for name, text in _documented_types().items():
        m = re.search(r"default=(.+)$", text)
        assert m, name
        documented = m.group(1).split(", ")  # ``rtol, atol : float, default=1e-3, 1e-4``
        group = [n for n, t in _documented_types().items() if t == text]
        value = documented[group.index(name)] if len(documented) == len(group) else m.group(1)
        assert ast.literal_eval(value) == defaults[name], name
