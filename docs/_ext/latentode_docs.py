"""Sphinx extension: the pages of latentode's site that are generated from the code.

Nothing here holds a list of names. At ``builder-inited`` it reads the package and writes

``api/``
    One page per public module: the package itself, and every module without a leading
    underscore anywhere in its dotted name that defines ``__all__`` and is the home of at least
    one of the names it exports (see below). A page shows the module's docstring, a summary
    table of its ``__all__`` and the full entry (autodoc + numpydoc) of every name it is the
    home of; names it only re-exports link to their home. ``api/index`` lists the pages.
``tutorials/``
    One page per ``tutorials/NN_*.py`` script (jupytext "percent" format): markdown cells become
    text, code cells Python blocks, verbatim and in order. Nothing is executed
    (``tests/test_tutorials.py`` runs the scripts). ``tutorials/index`` lists the pages.

Both folders belong to this extension (git ignores them): files it did not write in this run are
removed, and unchanged files are not rewritten (so Sphinx does not re-read them).

**Home of a name.** Every exported object is documented once, in the module where a user finds
it: the shallowest module on the path of the module that defines it whose ``__all__`` lists it,
the root package excepted (``latentode.LatentODERegressor`` is documented as
``latentode.estimator.LatentODERegressor``, ``latentode.nn.ODESolveError`` as
``latentode.ode.ODESolveError``, ``latentode.nn.LatentODE`` (defined in ``latentode.nn.model``)
as ``latentode.nn.LatentODE``). The defining module of a function or class is its
``__module__``; that of a constant is the module whose source assigns the name at top level. A
cross-reference to any exported name (``:class:`latentode.LatentODERegressor```,
``:meth:`latentode.LatentODERegressor.fit```) resolves to its home's entry.

Module docstrings use numpydoc-style headings (``Public API`` underlined with dashes), which
are not valid inside an autodoc directive; they are rendered as rubrics.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "ApiIndex",
    "Cell",
    "build_api_index",
    "module_page",
    "read_percent_cells",
    "rubric_headings",
    "setup",
    "tutorial_page",
    "write_pages",
]

API_DIR = "api"
TUTORIALS_DIR = "tutorials"
_MAX_VALUE_REPR = 70  # longer constant values are shown by type only


# ---------------------------------------------------------------------------- the API index
@dataclass
class ApiIndex:
    """The public API of a package, as documented.

    Attributes
    ----------
    package : str
        The root package.
    exports : dict of str to list of str
        Every public module that defines ``__all__`` -> its ``__all__``, in order.
    homes : dict of (str, str) to str
        ``(module, name)`` -> the module that documents that object.
    owners : dict of (str, str) to str
        ``(module, name)`` -> the module that defines that object.
    """

    package: str
    exports: dict[str, list[str]] = field(default_factory=dict)
    homes: dict[tuple[str, str], str] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def pages(self) -> list[str]:
        """The modules that get a page: the root and every home, root first, then sorted."""
        homes = set(self.homes.values())
        return [self.package] + sorted(m for m in self.exports if m in homes and
                                       m != self.package)

    def own_names(self, module: str) -> list[str]:
        """The names of ``module.__all__`` that ``module`` is the home of, in ``__all__`` order."""
        return [n for n in self.exports.get(module, []) if self.homes[module, n] == module]

    def aliases(self) -> dict[str, str]:
        """Every exported dotted name that is not its home's -> the home's dotted name."""
        out = {}
        for (module, name), home in self.homes.items():
            if home != module:
                out[f"{module}.{name}"] = f"{home}.{name}"
        return out


def _public_modules(package: str) -> dict[str, ModuleType]:
    """The package and its modules without a leading underscore in any part, imported."""
    root = importlib.import_module(package)
    modules = {package: root}
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        modules[info.name] = importlib.import_module(info.name)
    return modules


def _assigned_names(module: ModuleType) -> set[str]:
    """Names assigned at the top level of ``module``'s source (inside ``if`` / ``try`` too)."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    names: set[str] = set()
    stack = list(ast.parse(source).body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for attr in ("body", "orelse", "finalbody", "handlers"):
                stack += getattr(node, attr, [])
            continue
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body
            continue
        else:
            continue
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
    return names


def _defines(obj: Any) -> bool:
    """Whether ``obj`` records the module that defines it (functions and classes do)."""
    return inspect.isclass(obj) or inspect.isroutine(obj)


def build_api_index(package: str) -> ApiIndex:
    """Import ``package`` and its public modules and find the home of every exported name.

    Parameters
    ----------
    package : str
        The root package, e.g. ``"latentode"``.

    Returns
    -------
    ApiIndex
        Its public modules with their ``__all__``, and where each exported object is defined
        and documented.

    Raises
    ------
    ValueError
        If a module's ``__all__`` names something the module does not have.
    """
    modules = _public_modules(package)
    index = ApiIndex(package)
    for name, module in modules.items():
        exported = getattr(module, "__all__", None)
        if exported is not None:
            index.exports[name] = list(exported)
    assigned = {name: _assigned_names(module) for name, module in modules.items()}
    for module_name, names in index.exports.items():
        module = modules[module_name]
        for name in names:
            if not hasattr(module, name):
                raise ValueError(f"{module_name}.__all__ lists {name!r}, which it does not have")
            obj = getattr(module, name)
            if _defines(obj):
                owner = obj.__module__
            else:  # a constant: the module whose source assigns it
                owner = next((m for m in sorted(modules, key=lambda m: (-m.count("."), m))
                              if name in assigned[m] and getattr(modules[m], name, None) is obj),
                             module_name)
            index.owners[module_name, name] = owner
            index.homes[module_name, name] = _home(index, modules, owner, name, obj, module_name)
    return index


def _home(index: ApiIndex, modules: dict[str, ModuleType], owner: str, name: str, obj: Any,
          listed_in: str) -> str:
    """The shallowest module on ``owner``'s path (root excepted) whose ``__all__`` has ``obj``."""
    parts = owner.split(".")
    path = [".".join(parts[:i]) for i in range(2, len(parts) + 1)] or [owner]
    for candidate in path:
        if (name in index.exports.get(candidate, ())
                and getattr(modules[candidate], name, None) is obj):
            return candidate
    # defined in a private module or not exported on its own path: the shallowest listing module
    listing = [m for m, names in index.exports.items() if name in names
               and getattr(modules[m], name, None) is obj and m != index.package]
    return min(listing, key=lambda m: (m.count("."), m)) if listing else listed_in


# ---------------------------------------------------------------------------- API pages
def _first_paragraph(doc: str | None) -> str:
    """The summary of a docstring: its first paragraph on one line ('' when undocumented)."""
    if not doc:
        return ""
    lines = []
    for line in inspect.cleandoc(doc).splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def _summary(index: ApiIndex, module: str, name: str) -> str:
    obj = getattr(importlib.import_module(module), name)
    if _defines(obj):
        return _first_paragraph(inspect.getdoc(obj))
    return _first_paragraph("\n".join(_attribute_doc(index.owners[module, name], name)))


def _attribute_doc(module: str, name: str) -> list[str]:
    """The ``#:`` comment or string literal documenting a module-level constant."""
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    try:
        docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    except PycodeError:
        return []
    return list(docs.get(("", name), []))


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    return "function" if inspect.isroutine(obj) else "data"


_SECTIONS = {"class": "Classes", "exception": "Exceptions", "function": "Functions",
             "data": "Constants"}


def _rst_title(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    out = [".. list-table::", "   :widths: 30 70", ""]
    for ref, summary in rows:
        out += [f"   * - {ref}", f"     - {summary}" if summary else "     -"]
    return out + [""]


def module_page(index: ApiIndex, module: str) -> str:
    """The reStructuredText page of one public module.

    Parameters
    ----------
    index : ApiIndex
        The package's API index.
    module : str
        A module of ``index.pages``.

    Returns
    -------
    str
        Title, module docstring, summary table of ``__all__`` (re-exports linked to their home)
        and one autodoc entry per name the module is the home of, grouped by kind.
    """
    mod = importlib.import_module(module)
    names = index.exports.get(module, [])
    own = index.own_names(module)
    lines = [_rst_title(module, "="), f".. automodule:: {module}", "   :no-members:", ""]
    if own:
        lines += [".. rubric:: Summary", ""]
        lines += _table([(f":py:obj:`~{module}.{n}`", _summary(index, module, n)) for n in own])
    reexported = [n for n in names if n not in own]
    if reexported:
        lines += ["Also importable from here, documented where they live:", ""]
        lines += _table([(f":py:obj:`{n} <{index.homes[module, n]}.{n}>`",
                          f"from :py:mod:`{index.homes[module, n]}`") for n in reexported])
    by_kind: dict[str, list[str]] = {}
    for name in own:
        by_kind.setdefault(_kind(getattr(mod, name)), []).append(name)
    for kind in ("class", "exception", "function", "data"):
        if kind not in by_kind:
            continue
        lines += ["", _rst_title(_SECTIONS[kind], "-")]
        for name in by_kind[kind]:
            lines += _entry(index, module, name, kind, getattr(mod, name))
    return "\n".join(lines).rstrip() + "\n"


def _entry(index: ApiIndex, module: str, name: str, kind: str, obj: Any) -> list[str]:
    if kind in ("class", "exception"):
        bases = ["   :show-inheritance:"] if obj.__bases__ != (object,) else []
        return [f".. autoclass:: {module}.{name}", "   :members:", *bases, ""]
    if kind == "function":
        return [f".. autofunction:: {module}.{name}", ""]
    text = repr(obj)
    shown = (f"   :value: {text}" if len(text) <= _MAX_VALUE_REPR and "\n" not in text
             else f"   :type: {type(obj).__module__}.{type(obj).__qualname__}")
    doc = _attribute_doc(index.owners[module, name], name)
    return [f".. py:data:: {name}", f"   :module: {module}", shown, "",
            *[f"   {line}".rstrip() for line in doc], ""]


def api_index_page(index: ApiIndex) -> str:
    """The ``api/index`` page: every module page with the first line of its docstring."""
    lines = [_rst_title("API reference", "="),
             "Generated from the docstrings: one page per public module, listing its ``__all__``.",
             "Each object is documented once, at its home: the shallowest module on the path of",
             "the module that defines it which exports it (``latentode.nn.LatentODE``, defined in",
             "``latentode.nn.model``). The other modules that export it link there.", "",
             ".. toctree::", "   :hidden:", ""]
    lines += [f"   {m}" for m in index.pages] + [""]
    lines += _table([(f":doc:`{m}`", _first_paragraph(importlib.import_module(m).__doc__))
                     for m in index.pages])
    return "\n".join(lines).rstrip() + "\n"


_HEADING = re.compile(r"^(\s*)(\S.*?)\s*$")


def rubric_headings(lines: list[str]) -> list[str]:
    """Turn numpydoc-style headings (a line underlined by ``---`` / ``===``) into rubrics.

    Parameters
    ----------
    lines : list of str
        Lines of a docstring.

    Returns
    -------
    list of str
        The same lines, each ``Title`` followed by a line of one repeated ``-`` or ``=`` at
        least as long replaced by ``.. rubric:: Title`` (RST section titles are not allowed
        inside autodoc's directive). Table borders (runs of ``=`` separated by spaces) and
        lines under a blank line are left alone.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        under = lines[i + 1].strip() if i + 1 < len(lines) else ""
        head = _HEADING.match(line)
        if (head and under and len(set(under)) == 1 and under[0] in "-="
                and len(under) >= len(head.group(2)) and len(under) >= 3
                and not set(head.group(2)) <= {"-", "="}):
            out += [f"{head.group(1)}.. rubric:: {head.group(2)}", ""]
            i += 2
            continue
        out.append(line)
        i += 1
    return out


# ---------------------------------------------------------------------------- tutorials
@dataclass
class Cell:
    """One cell of a percent-format script: ``kind`` is ``"markdown"`` or ``"code"``."""

    kind: str
    lines: list[str]

    @property
    def text(self) -> str:
        """The cell's content, blank lines at both ends dropped."""
        return "\n".join(self.lines).strip("\n")


_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_CELL_TYPE = re.compile(r"\[(?P<type>\w+)\]")


def read_percent_cells(source: str) -> list[Cell]:
    """Split a jupytext "percent" script into its cells.

    Parameters
    ----------
    source : str
        The script: an optional jupytext header (``# ---`` ... ``# ---``), then cells opened by
        ``# %%`` lines (``# %% [markdown]`` / ``[md]`` for text, ``[raw]`` cells are dropped).

    Returns
    -------
    list of Cell
        In order; markdown lines without their leading ``# `` (``#`` alone is a blank line),
        code lines verbatim; empty cells are dropped. Code before the first marker is a cell.

    Raises
    ------
    ValueError
        If a markdown cell has a line that is not a comment, or the header is not closed.
    """
    lines = source.splitlines()
    if lines and lines[0].strip() == "# ---":
        try:
            end = lines.index("# ---", 1)
        except ValueError:
            raise ValueError("jupytext header opened by '# ---' is never closed") from None
        lines = lines[end + 1:]
    cells: list[Cell] = []
    current = Cell("code", [])
    for number, line in enumerate(lines, 1):
        marker = _CELL.match(line)
        if marker:
            cells.append(current)
            kind = _CELL_TYPE.search(marker.group("rest"))
            kind_name = kind.group("type").lower() if kind else "code"
            current = Cell({"md": "markdown"}.get(kind_name, kind_name), [])
            continue
        if current.kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"line {number} of a markdown cell is not a comment: {line!r}")
            line = line[2:] if line.startswith("# ") else line[1:]
        current.lines.append(line)
    cells.append(current)
    return [c for c in cells if c.kind in ("markdown", "code") and c.text.strip()]


def _fence(code: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def tutorial_page(script: Path, repo_path: str) -> str:
    """The MyST page of one tutorial script.

    Parameters
    ----------
    script : Path
        A jupytext "percent" script.
    repo_path : str
        Its path in the repository, as shown on the page (``tutorials/01_quickstart.py``).

    Returns
    -------
    str
        The first markdown cell (the title), a note on how to run the script, then every
        cell in order: markdown as text, code as a ``python`` block.
    """
    cells = read_percent_cells(script.read_text(encoding="utf-8"))
    note = ["```{note}",
            f"This page shows `{repo_path}` (cells in order, not executed here). Run it with "
            f"`python {repo_path}`; its figures go to `out/tutorials` (`LATENTODE_TUTORIAL_OUT`),"
            " and `LATENTODE_TUTORIAL_FAST=1` runs it in seconds on a smaller problem, as the "
            "test suite does (`tests/test_tutorials.py`).",
            "```"]
    parts: list[str] = []
    for i, cell in enumerate(cells):
        if cell.kind == "markdown":
            parts.append(cell.text)
        else:
            fence = _fence(cell.text)
            parts.append(f"{fence}python\n{cell.text}\n{fence}")
        if i == 0:
            parts.append("\n".join(note))
    return "\n\n".join(parts) + "\n"


def tutorials_index_page(pages: list[str]) -> str:
    """The ``tutorials/index`` page: a toctree of the tutorial pages."""
    return "\n".join([
        "# Tutorials", "",
        "The scripts of `tutorials/`, one page each, shown as written. They are plain Python "
        "files in jupytext \"percent\" format (open them as notebooks with jupytext, or run "
        "them as scripts); every one runs in the test suite.", "",
        "```{toctree}", ":maxdepth: 1", "", *pages, "```", ""])


# ---------------------------------------------------------------------------- writing
def write_pages(folder: Path, pages: dict[str, str]) -> list[str]:
    """Make ``folder`` hold exactly ``pages`` (file name -> text); return the names written.

    Files whose text is unchanged are not rewritten (Sphinx would read them again); files in
    ``folder`` that are not in ``pages`` are removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    for path in folder.iterdir():
        if path.is_file() and path.name not in pages:
            path.unlink()
    return written


def _generate(app: Any) -> None:
    config = app.config
    srcdir = Path(app.srcdir)
    index = build_api_index(config.latentode_docs_package)
    pages = {f"{m}.rst": module_page(index, m) for m in index.pages}
    pages["index.rst"] = api_index_page(index)
    write_pages(srcdir / API_DIR, pages)
    app.env.latentode_docs_aliases = index.aliases()

    tutorials = Path(config.latentode_docs_tutorials)
    scripts = sorted(tutorials.glob("[0-9][0-9]_*.py"))
    repo = tutorials.parent
    pages = {f"{s.stem}.md": tutorial_page(s, s.relative_to(repo).as_posix()) for s in scripts}
    pages["index.md"] = tutorials_index_page([s.stem for s in scripts])
    write_pages(srcdir / TUTORIALS_DIR, pages)


def _module_headings(app: Any, what: str, name: str, obj: Any, options: Any,
                     lines: list[str]) -> None:
    if what == "module":
        lines[:] = rubric_headings(lines)


def _skip_foreign_member(app: Any, what: str, name: str, obj: Any, skip: bool,
                         options: Any) -> bool | None:
    """Skip class members defined outside the package (e.g. scikit-learn's ``set_*_request``)."""
    if what in ("class", "exception") and _defines(obj):
        module = getattr(obj, "__module__", None) or ""
        package = app.config.latentode_docs_package
        if module != package and not module.startswith(package + "."):
            return True
    return None


def _resolve_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference to a re-exported name (or its members) at the name's home."""
    if node.get("refdomain") != "py":
        return None
    aliases = getattr(env, "latentode_docs_aliases", {})
    parts = node.get("reftarget", "").split(".")
    for i in range(len(parts), 1, -1):
        home = aliases.get(".".join(parts[:i]))
        if home is not None:
            target = ".".join([home, *parts[i:]])
            return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder,
                                                     node["reftype"], target, node, contnode)
    return None


def setup(app: Any) -> dict[str, Any]:
    """Register the configuration values and event handlers."""
    app.add_config_value("latentode_docs_package", "latentode", "env")
    app.add_config_value("latentode_docs_tutorials", "", "env")
    app.connect("builder-inited", _generate)
    app.connect("autodoc-process-docstring", _module_headings)
    app.connect("autodoc-skip-member", _skip_foreign_member)
    app.connect("missing-reference", _resolve_alias)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
