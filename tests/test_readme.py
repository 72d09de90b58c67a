"""Every ```python block of README.md runs, verbatim.

How the blocks run
------------------
The fenced blocks are read from README.md in order and executed with :func:`exec` in one shared
namespace, like the cells of a notebook (the Uncertainty block continues the quick start's
session: ``est`` and ``df`` come from there), in a temporary working directory (so
``est.save(...)`` writes there), with one torch thread and matplotlib's Agg backend. Tracebacks
name the README line (the code is compiled with the file name ``README.md:<line>``).

The one departure from "as written": shorter training
----------------------------------------------------
In the default suite the estimators' ``fit`` (the regressor's and the classifier's share
``LatentODERegressor._fit``) is wrapped (monkeypatched, for
this test only) so that it trains at most ``FAST_EPOCHS`` epochs: the estimator's
``max_epochs`` is lowered for the duration of the call and restored afterwards, so the block's
text is unchanged, ``get_params()`` still shows what the README asks for, and no library code
reads an environment variable. Everything else (data, model size, encoder, solver, gradient,
predict / extrapolate / score / save / load) runs as written. ``test_readme_as_written``
(marked slow, ``make test-slow``) runs the blocks without the cap.

Markers
-------
An HTML comment on the line right before a fence changes how its block is treated:

* ``<!-- readme-test: skip: REASON -->``: not run; REASON (required) is the skip reason.
* ``<!-- readme-test: requires: cuda | physionet | <module> -->``: skipped, with that reason,
  unless CUDA is available / the PhysioNet archive is found (``LATENTODE_PHYSIONET`` or
  ``../shared/data/physionet2012``) / the module imports. A skipped block skips the blocks
  after it too (they may continue its session).

Blocks in other languages (``bash``, ``text``) are not run. Fences labelled ``py``,
``python3``, ``pycon`` or ``ipython`` are refused, so that no Python block escapes the test.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FAST_EPOCHS = 1

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(skip|requires)\s*:\s*(.*?)\s*-->\s*$")
_UNTESTED_PYTHON = {"py", "python3", "pycon", "ipython", "py3"}


@dataclass
class Block:
    """One fenced block of the README."""

    lang: str
    line: int  # 1-based line of its first code line
    code: str
    marker: tuple[str, str] | None  # ("skip", reason) or ("requires", what)


def read_blocks(path: Path = README) -> list[Block]:
    """The fenced blocks of ``path``, in order, with the marker comment preceding each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise AssertionError(f"README.md:{i + 1}: unclosed code fence")
        marker = None
        if i > 0 and (m := _MARKER.match(lines[i - 1])) is not None:
            marker = (m.group(1), m.group(2))
        blocks.append(Block(fence.group(1).lower(), start + 1, "\n".join(lines[start:end]),
                            marker))
        i = end + 1
    return blocks


def python_blocks() -> list[Block]:
    return [b for b in read_blocks() if b.lang == "python"]


def _unavailable(block: Block) -> str | None:
    """Why ``block`` cannot run here (None: it can)."""
    if block.marker is None:
        return None
    kind, what = block.marker
    if kind == "skip":
        return what
    if what == "cuda":
        import torch

        return None if torch.cuda.is_available() else "needs CUDA"
    if what == "physionet":
        found = os.environ.get("LATENTODE_PHYSIONET") or (
            REPO.parent / "shared" / "data" / "physionet2012").exists()
        return None if found else "needs the PhysioNet 2012 archive"
    return None if importlib.util.find_spec(what) else f"needs {what}"


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch working directory, one torch thread, the Agg backend; restored afterwards."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("matplotlib"):
        import matplotlib

        matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    from latentode.utils import torch_threads

    with torch_threads(1):
        yield tmp_path
    if importlib.util.find_spec("matplotlib"):
        import matplotlib.pyplot as plt

        plt.close("all")


def cap_training(monkeypatch: pytest.MonkeyPatch, epochs: int) -> None:
    """Make every estimator's ``fit`` train at most ``epochs`` epochs (see module docstring):
    the regressor's and the classifier's ``fit`` share ``LatentODERegressor._fit``."""
    from latentode import LatentODERegressor

    fit = LatentODERegressor._fit

    def capped_fit(self, *args, **kwargs):
        requested = self.max_epochs
        self.max_epochs = min(requested, epochs)
        try:
            return fit(self, *args, **kwargs)
        finally:
            self.max_epochs = requested

    monkeypatch.setattr(LatentODERegressor, "_fit", capped_fit)


def run_blocks() -> tuple[dict, list[warnings.WarningMessage]]:
    """Execute the README's Python blocks in order; return the namespace and the warnings."""
    namespace: dict = {"__name__": "__readme__"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for block in python_blocks():
            reason = _unavailable(block)
            if reason is not None:
                pytest.skip(f"README.md:{block.line}: {reason} (and the blocks after it)")
            exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    return namespace, list(caught)


# ---------------------------------------------------------------------------- structure
def test_readme_blocks_are_all_tested():
    blocks = read_blocks()
    refused = [f"README.md:{b.line} ({b.lang})" for b in blocks if b.lang in _UNTESTED_PYTHON]
    assert not refused, f"label these fences `python` so they are run: {refused}"
    python = python_blocks()
    assert len(python) >= 3  # quick start, ODE core, uncertainty
    assert "LatentODERegressor" in python[0].code and python[0].marker is None  # runs as is
    for b in python:
        if b.marker is not None and b.marker[0] == "skip":
            assert b.marker[1], f"README.md:{b.line}: a skipped block needs a reason"
        compile(b.code, f"README.md:{b.line}", "exec")  # at least valid Python


def test_marker_parsing(tmp_path):
    text = ("intro\n<!-- readme-test: skip: needs a cluster -->\n```python\nx = 1\n```\n"
            "```bash\nmake test\n```\n<!-- readme-test: requires: cuda -->\n```python\ny = 2\n"
            "z = 3\n```\n")
    path = tmp_path / "R.md"
    path.write_text(text)
    blocks = read_blocks(path)
    assert [(b.lang, b.line, b.code, b.marker) for b in blocks] == [
        ("python", 4, "x = 1", ("skip", "needs a cluster")),
        ("bash", 7, "make test", None),
        ("python", 11, "y = 2\nz = 3", ("requires", "cuda")),
    ]
    assert _unavailable(blocks[0]) == "needs a cluster"
    assert _unavailable(Block("python", 1, "", ("requires", "no_such_module_xyz"))) == (
        "needs no_such_module_xyz")
    path.write_text("```python\nx = 1\n")
    with pytest.raises(AssertionError, match="unclosed"):
        read_blocks(path)


# ---------------------------------------------------------------------------- running
def test_readme_python_blocks_run(session, monkeypatch):
    cap_training(monkeypatch, FAST_EPOCHS)
    ns, caught = run_blocks()

    # the quick start as written: the estimator keeps its parameters, trained (capped) ...
    est, df = ns["est"], ns["df"]
    assert est.get_params()["max_epochs"] == 20 and est.history_.n_epochs == FAST_EPOCHS
    assert (session / "model.latentode").is_file()
    # ... on the stays that have some HR, MAP or Temp; the 7 others come out as NaN
    empty = df.groupby("id")[["HR", "MAP", "Temp"]].count().sum(axis=1) == 0
    assert int(empty.sum()) == 7
    with pytest.warns(UserWarning, match="^7 series have no observed value to condition on"):
        pred = est.predict(df)
    nan_rows = pred[["HR", "MAP", "Temp"]].isna().all(axis=1)
    assert set(pred.loc[nan_rows, "id"]) == set(empty[empty].index)
    assert pred.loc[~nan_rows, ["HR", "MAP", "Temp"]].notna().all().all()

    # the library's own warnings are the announced ones, nothing numerical
    here = ("latentode", "README.md", Path(__file__).name)  # warnings point at the caller
    ours = [w for w in caught if any(h in w.filename for h in here)]
    unexpected = [f"{w.category.__name__}: {w.message}" for w in ours
                  if "no observed value" not in str(w.message)]
    assert not unexpected, unexpected
    fit_warnings = [w for w in ours if "left out of the fit" in str(w.message)]
    # the quick start's and the classifier's (same three channels): one each
    assert len(fit_warnings) == 2
    assert all(str(w.message).startswith("7 series have") for w in fit_warnings)
    # the classifier block: one probability row per stay, NaN for the same 7 stays
    proba = ns["proba"]
    assert len(proba) == 300 and set(proba.index[proba[1].isna()]) == set(empty[empty].index)


@pytest.mark.slow
def test_readme_as_written(session):
    ns, _ = run_blocks()
    assert ns["est"].history_.n_epochs >= 1
