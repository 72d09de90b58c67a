"""Shared test settings (importable because pytest puts ``tests/`` on ``sys.path``)."""

#: a tiny, fast estimator configuration for contract tests (not for accuracy)
TINY = dict(latent_dim=3, rec_dim=6, units=12, n_layers=1, gru_units=12, encoder="gru",
            gradient="backprop", max_epochs=2, batch_size=8, verbose=0, random_state=0,
            device="cpu")


def load_script(path, name=None):
    """Import a script that is not a package module (``benchmarks/*.py``) by its path.

    Registered in ``sys.modules`` under ``name`` (default ``<stem>_under_test``), which
    dataclasses and pickling of its objects need.
    """
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(path)
    name = name or f"{path.stem}_under_test"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: the repository's ``benchmarks/`` folder
BENCHMARKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"
