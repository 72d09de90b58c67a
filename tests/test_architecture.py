"""The layer contract of docs/ARCHITECTURE.md, checked.

``latentode.ode``, ``latentode.nn`` and ``latentode.training`` are torch-only: importing them
loads neither pandas nor scikit-learn (checked in a fresh interpreter, where nothing else has
imported them yet), and no module under them imports a layer above it or the pandas side of the
package, not even lazily inside a function (checked on the source).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import latentode

PACKAGE = Path(latentode.__file__).parent
TORCH_ONLY = ("latentode.ode", "latentode.nn", "latentode.training")
HEAVY = ("pandas", "sklearn", "matplotlib")

# what each torch-only layer may not import (third-party packages and latentode modules)
FORBIDDEN_BELOW = ("pandas", "sklearn", "matplotlib", "latentode.data", "latentode.datasets",
                   "latentode.estimator", "latentode.io", "latentode.plotting",
                   "latentode.uncertainty", "latentode.utils", "latentode.demo")
FORBIDDEN = {
    "ode": (*FORBIDDEN_BELOW, "latentode.nn", "latentode.training", "latentode.batch"),
    "nn": (*FORBIDDEN_BELOW, "latentode.training"),
    "training": FORBIDDEN_BELOW,
}


def _loaded_after_import(modules: tuple[str, ...]) -> list[str]:
    """Heavy top-level packages in ``sys.modules`` after importing ``modules`` in a subprocess."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_torch_only_layers_do_not_import_pandas_or_sklearn() -> None:
    assert _loaded_after_import(TORCH_ONLY) == []


def test_batch_is_torch_only_and_reexported() -> None:
    assert _loaded_after_import(("latentode.batch",)) == []
    from latentode.batch import Batch
    from latentode.data import Batch as DataBatch
    from latentode.data.batch import Batch as DataBatchModule

    assert DataBatch is Batch and DataBatchModule is Batch


def test_import_check_sees_pandas() -> None:
    # the subprocess check above can fail: the data layer does load pandas
    assert "pandas" in _loaded_after_import(("latentode.data",))


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module an import statement in ``path`` names (relative ones resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from latentode import data` names latentode.data
            out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_sources_import_only_below(layer: str) -> None:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        package = ".".join(rel.parts[:-1])  # the package a module (or __init__) sits in
        for lineno, name in _imports(path, package):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} imports {name}")
    assert bad == []


def test_static_check_resolves_relative_imports(tmp_path: Path) -> None:
    # the source check can fail: a relative import of the data layer is caught
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from ..data import pad_frame\n    import pandas as pd\n")
    names = [name for _, name in _imports(mod, "latentode.nn")]
    assert "latentode.data" in names and "latentode.data.pad_frame" in names and "pandas" in names


def _latentode_modules_after_import(module: str) -> list[str]:
    """The ``latentode`` modules in ``sys.modules`` after importing ``module`` in a subprocess."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('latentode'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["io", "_state"])
def test_io_and_fitted_state_never_import_the_estimator(module: str) -> None:
    # not at import time...
    loaded = _latentode_modules_after_import(f"latentode.{module}")
    assert f"latentode.{module}" in loaded and "latentode.estimator" not in loaded
    # ...and not in any function either (nor under TYPE_CHECKING): the class is passed in
    names = [name for _, name in _imports(PACKAGE / f"{module}.py", "latentode")]
    # the resolver sees this file's relative imports (io uses the state, the state the network)
    assert ("latentode._state" if module == "io" else "latentode.nn") in names
    assert [n for n in names if n == "latentode.estimator" or n.startswith("latentode.estimator.")
            or n == "latentode.LatentODERegressor"] == []


def test_prediction_function_is_torch_only() -> None:
    # latentode._predict runs the network at padded query times; the data layer builds the
    # query and reads the result back per row, so _predict never needs pandas
    assert _loaded_after_import(("latentode._predict",)) == []
    names = [name for _, name in _imports(PACKAGE / "_predict.py", "latentode")]
    assert "latentode.batch" in names and "latentode.ode" in names  # the resolver sees them
    assert [n for n in names if any(n == f or n.startswith(f + ".")
                                    for f in FORBIDDEN_BELOW)] == []


def test_query_building_lives_in_the_data_layer() -> None:
    # the grid, horizon and scatter helpers have one home: the estimator and plotting call it
    for module in ("estimator", "plotting"):
        tree = ast.parse((PACKAGE / f"{module}.py").read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert defined.isdisjoint({"_forecast_query", "_encode_query", "_horizon_step"})
    source = (PACKAGE / "plotting.py").read_text()
    assert "horizon_delta(" in source and "pd.to_timedelta(horizon)" not in source
