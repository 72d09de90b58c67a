"""Command-line helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import ast
from typing import Any

from latentode.nn.model import POINT_PREDICTIONS


def parse_params(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as a dict (values parsed as Python literals where they parse)."""
    params: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


def add_point_rules(parser: argparse.ArgumentParser, shows: str) -> None:
    """``--point-rules RULE ...``: score these ``point_prediction`` rules (of
    :data:`~latentode.nn.model.POINT_PREDICTIONS`) on the same fit; ``shows`` says how the
    script prints them."""
    parser.add_argument("--point-rules", nargs="+", default=None, metavar="RULE",
                        choices=POINT_PREDICTIONS,
                        help=f"score these point_prediction rules on the same fit ({shows})")


def add_seed_arguments(parser: argparse.ArgumentParser, seeds: str) -> None:
    """``--seed`` (``seeds``: what it seeds besides the model) and ``--model-seed`` (the
    estimator's ``random_state``; default ``--seed``): separate seeds tell the spread of the
    fits on the same data from the spread of the data (:func:`model_seed`)."""
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of {seeds} (and of the model unless --model-seed)")
    parser.add_argument("--model-seed", type=int, default=None,
                        help="the estimator's random_state (default: --seed)")


def model_seed(args: argparse.Namespace) -> int:
    """The estimator's ``random_state`` of :func:`add_seed_arguments`' arguments."""
    return int(args.seed if args.model_seed is None else args.model_seed)
