"""The documentation site builds, offline, with warnings as errors, and shows the whole API.

``test_site_*`` build the site once (``sphinx -W --keep-going -b html``, as ``make docs`` does,
in a subprocess, into a temporary folder) and read the HTML: the README is the home page, the
architecture page and the four tutorials are there, and every name of every public module's
``__all__`` is documented on its home page. The build regenerates ``docs/api`` and
``docs/tutorials`` (git-ignored, owned by ``docs/_ext/latentode_docs.py``), like ``make docs``.

The other tests check the pieces of that extension on small inputs: the home of a re-exported
name, the percent-format reader, the heading rewrite and the page writer.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e .[docs])")
pytest.importorskip("numpydoc", reason="the docs extra is not installed")
pytest.importorskip("pydata_sphinx_theme", reason="the docs extra is not installed")
pytest.importorskip("myst_parser", reason="the docs extra is not installed")

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIALS = REPO / "tutorials"


def _load_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("latentode_docs",
                                                  DOCS / "_ext" / "latentode_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ext = _load_extension()


# ---------------------------------------------------------------------------- the built site
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site as ``make docs`` does (warnings are errors) into a temporary folder."""
    out = tmp_path_factory.mktemp("docs")
    # a tutorial that ran would write its figures there
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "LATENTODE_TUTORIAL_OUT": str(out / "tutorial_figures")}
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, f"docs build failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    return out / "html"


def _read(path: Path) -> str:
    assert path.is_file(), f"{path.name} was not built"
    return path.read_text(encoding="utf-8")


def _ids(page: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page))


def _text(page: str) -> str:
    """The page's text: tags removed, entities decoded (highlighted code included)."""
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    return text.translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))  # smart quotes


def test_site_home_page_is_the_readme(site: Path) -> None:
    index = _text(_read(site / "index.html"))
    headings, fenced = [], False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if not fenced and (m := re.match(r"^#{2,3} (.+)$", line)):
            headings.append(m.group(1).replace("`", "").strip())
    assert len(headings) >= 10
    missing = [h for h in headings if h not in index]
    assert missing == []
    assert "from latentode import LatentODERegressor" in index
    assert "make docs" in index  # the README says how to build this site


def test_site_architecture_and_navigation(site: Path) -> None:
    arch = _text(_read(site / "ARCHITECTURE.html"))
    assert "latentode architecture (contracts between layers)" in arch
    assert "The documentation site" in arch  # why Sphinx, and how pages are generated
    nav = _read(site / "index.html")
    for target in ("ARCHITECTURE.html", "tutorials/index.html", "api/index.html"):
        assert f'href="{target}"' in nav


def test_site_documents_the_estimator(site: Path) -> None:
    page = _read(site / "api" / "latentode.estimator.html")
    ids = _ids(page)
    for member in ("", ".fit", ".predict", ".extrapolate", ".sample", ".score",
                   ".predict_intensity", ".save", ".load"):
        assert f"latentode.estimator.LatentODERegressor{member}" in ids
    text = _text(page)
    assert "Parameters" in text and "latent_dim" in text and "default=20" in text
    # scikit-learn's own methods (set_fit_request ...) are not ours to document
    assert not any("_request" in i for i in ids)


def test_site_documents_every_public_name_once_at_its_home(site: Path) -> None:
    index = ext.build_api_index("latentode")
    assert set(index.pages) >= {"latentode", "latentode.estimator", "latentode.nn",
                                "latentode.ode", "latentode.training", "latentode.data",
                                "latentode.datasets", "latentode.evaluation", "latentode.io",
                                "latentode.plotting", "latentode.uncertainty"}
    documented: dict[str, str] = {}
    for module in index.pages:
        page = _read(site / "api" / f"{module}.html")
        ids = _ids(page)
        assert f"module-{module}" in ids
        for name in index.exports.get(module, []):
            home = index.homes[module, name]
            if home == module:
                assert f"{module}.{name}" in ids, f"{module}.{name} is not documented"
                documented.setdefault(f"{module}.{name}", module)
            else:  # a re-export links to the home's entry
                assert f'href="{home}.html#{home}.{name}"' in page, f"{module}.{name}"
    # the package's own names: the estimator on its module's page, the ODE core on its own
    assert documented["latentode.estimator.LatentODERegressor"] == "latentode.estimator"
    assert documented["latentode.ode.odeint"] == "latentode.ode"
    assert documented["latentode.ode.ODESolveError"] == "latentode.ode"
    assert documented["latentode.plotting.plot_forecast"] == "latentode.plotting"
    assert len(documented) >= 120  # 139 names when this test was written
    api_index = _read(site / "api" / "index.html")
    assert all(f'href="{m}.html"' in api_index for m in index.pages)


def test_site_resolves_references_to_reexported_names(site: Path) -> None:
    # latentode.data's docstring says :class:`~latentode.LatentODERegressor`
    page = _read(site / "api" / "latentode.data.html")
    assert 'href="latentode.estimator.html#latentode.estimator.LatentODERegressor"' in page
    # latentode.evaluation's say :meth:`~latentode.LatentODERegressor.sample`: a method too
    page = _read(site / "api" / "latentode.evaluation.html")
    assert 'href="latentode.estimator.html#latentode.estimator.LatentODERegressor.sample"' in page


def test_site_renders_every_tutorial_without_running_it(site: Path) -> None:
    scripts = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
    assert len(scripts) == 5  # 01 to 05
    toc = _read(site / "tutorials" / "index.html")
    for script in scripts:
        assert f'href="{script.stem}.html"' in toc
        page = _text(_read(site / "tutorials" / f"{script.stem}.html"))
        cells = ext.read_percent_cells(script.read_text(encoding="utf-8"))
        title = cells[0].text.splitlines()[0].lstrip("# ").replace("`", "")  # markdown code
        assert title in page
        code = [line.strip() for c in cells if c.kind == "code" for line in c.lines]
        code = [line for line in code if line]
        assert len(code) > 20
        missing = [line for line in code if line not in page]
        assert missing == [], f"{script.name}: lines not on its page: {missing[:3]}"
        assert f"tutorials/{script.name}" in page
        assert "# %%" not in page
    assert not (site.parent / "tutorial_figures").exists()  # no tutorial ran


# ---------------------------------------------------------------------------- the pieces
def test_every_exported_name_has_a_summary() -> None:
    index = ext.build_api_index("latentode")
    missing = [f"{m}.{n}" for m in index.pages for n in index.own_names(m)
               if not ext._summary(index, m, n)]
    assert missing == []


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package whose names are re-exported across modules, imported from ``tmp_path``."""
    root = tmp_path / "fakepkg"
    files = {
        "__init__.py": """
            from .core import Model
            from ._impl import Thing
            __all__ = ["Model", "Thing", "VERSION"]
            #: the version
            VERSION = "1"
            """,
        "_impl.py": '''
            class Thing:
                """A thing defined in a private module."""
            ''',
        "core.py": '''
            __all__ = ["Model"]
            class Model:
                """The model."""
            ''',
        "sub/__init__.py": """
            from .mod import LIMIT, helper
            from fakepkg.core import Model
            __all__ = ["helper", "LIMIT", "Model"]
            """,
        "sub/mod.py": '''
            __all__ = ["helper", "LIMIT"]
            #: the limit
            LIMIT = (1, 2)
            def helper():
                """Help."""
            ''',
        "sub/extra.py": '''
            __all__ = ["only_here"]
            def only_here():
                """Only in this submodule."""
            ''',
        "sub/plain.py": "def undeclared():\n    pass\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fakepkg"
    for name in [m for m in sys.modules if m == "fakepkg" or m.startswith("fakepkg.")]:
        del sys.modules[name]


def test_api_index_homes(fake_package: str) -> None:
    index = ext.build_api_index(fake_package)
    homes = index.homes
    assert homes["fakepkg", "Model"] == "fakepkg.core"  # the root is never a home
    assert homes["fakepkg.sub", "Model"] == "fakepkg.core"
    assert homes["fakepkg", "Thing"] == "fakepkg"  # defined in a private module
    assert homes["fakepkg", "VERSION"] == "fakepkg"
    assert homes["fakepkg.sub", "helper"] == "fakepkg.sub"  # not fakepkg.sub.mod
    assert homes["fakepkg.sub.mod", "helper"] == "fakepkg.sub"
    assert homes["fakepkg.sub", "LIMIT"] == "fakepkg.sub"
    assert index.owners["fakepkg.sub", "LIMIT"] == "fakepkg.sub.mod"  # found in the source
    # a page for the root and each home; fakepkg.sub.mod re-exports only, plain has no __all__
    assert index.pages == ["fakepkg", "fakepkg.core", "fakepkg.sub", "fakepkg.sub.extra"]
    assert index.own_names("fakepkg.sub") == ["helper", "LIMIT"]
    assert index.aliases() == {"fakepkg.Model": "fakepkg.core.Model",
                               "fakepkg.sub.Model": "fakepkg.core.Model",
                               "fakepkg.sub.mod.helper": "fakepkg.sub.helper",
                               "fakepkg.sub.mod.LIMIT": "fakepkg.sub.LIMIT"}
    page = ext.module_page(index, "fakepkg.sub")
    assert ".. autofunction:: fakepkg.sub.helper" in page
    assert ".. py:data:: LIMIT\n   :module: fakepkg.sub\n   :value: (1, 2)\n\n   the limit" in page
    assert ":py:obj:`Model <fakepkg.core.Model>`" in page and "autoclass" not in page
    assert ext._summary(index, "fakepkg.sub", "LIMIT") == "the limit"


def test_api_index_rejects_a_missing_export(fake_package: str, tmp_path: Path) -> None:
    core = tmp_path / "fakepkg" / "core.py"
    core.write_text(core.read_text() + '__all__.append("Missing")\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"fakepkg.core.__all__ lists 'Missing'"):
        ext.build_api_index(fake_package)


def test_read_percent_cells() -> None:
    source = textwrap.dedent("""\
        # ---
        # jupyter:
        #   jupytext:
        #     formats: py:percent
        # ---

        # %% [markdown]
        # # Title
        #
        # Some *text*.

        # %%
        import os

        x = 1  # a comment

        # %% [raw]
        # dropped

        # %% [md]
        # ## Part

        # %%

        # %% A titled cell
        print(x)
        """)
    cells = ext.read_percent_cells(source)
    assert [(c.kind, c.text) for c in cells] == [
        ("markdown", "# Title\n\nSome *text*."),
        ("code", "import os\n\nx = 1  # a comment"),
        ("markdown", "## Part"),
        ("code", "print(x)"),
    ]
    with pytest.raises(ValueError, match="line 3 of a markdown cell is not a comment"):
        ext.read_percent_cells("# %% [markdown]\n# text\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        ext.read_percent_cells("# ---\n# jupyter:\n")


def test_tutorial_page_fences_and_note(tmp_path: Path) -> None:
    script = tmp_path / "01_x.py"
    script.write_text('# %% [markdown]\n# # X\n\n# %%\ns = """```"""\n', encoding="utf-8")
    page = ext.tutorial_page(script, "tutorials/01_x.py")
    assert page.startswith("# X\n\n```{note}\n")
    assert '````python\ns = """```"""\n````' in page  # a longer fence than the code's


def test_rubric_headings() -> None:
    lines = ["Summary.", "", "Public API", "----------", "name", "    what", "",
             "=====  =====", "a      b", "=====  =====", "", "Short", "--", "", "----------"]
    assert ext.rubric_headings(lines) == [
        "Summary.", "", ".. rubric:: Public API", "", "name", "    what", "",
        "=====  =====", "a      b", "=====  =====", "", "Short", "--", "", "----------"]


def test_write_pages(tmp_path: Path) -> None:
    folder = tmp_path / "api"
    assert ext.write_pages(folder, {"a.rst": "A\n", "b.rst": "B\n"}) == ["a.rst", "b.rst"]
    before = (folder / "a.rst").stat().st_mtime_ns
    assert ext.write_pages(folder, {"a.rst": "A\n", "c.rst": "C\n"}) == ["c.rst"]
    assert sorted(p.name for p in folder.iterdir()) == ["a.rst", "c.rst"]  # b removed
    assert (folder / "a.rst").stat().st_mtime_ns == before  # unchanged: not rewritten
