"""Command-line helpers shared by the benchmark scripts."""

from __future__ import annotations

import ast
from typing import Any


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
