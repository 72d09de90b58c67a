"""Small classification data sets for screening a LatentODEClassifier setting (README).

A default of the classifier must not lose on small data trained for a fixed number of epochs,
where PhysioNet's early-stopped fits do not look. Two tasks, each fitted with the library's
defaults plus the ``--param NAME=VALUE`` settings under test:

The ``--param`` settings override the task's own (``max_epochs=1`` for a smoke run).

* ``oscillators``: damped oscillators of three frequencies (0.8, 1.8, 3.2; 60 training and 30
  test series per class, 15 points on [0, 6], 30 % of the values missing, noise 0.05; the
  generator of ``tests/test_classifier.py``), a tiny network (``rec_dim`` 12, ``units`` 24,
  ``latent_dim`` 4, GRU encoder, RK4), 20 epochs, no validation; the Latent ODE classifier and
  the encoder-only one, ``random_state`` 0 and 1. Prints the accuracy and the one-vs-rest
  AUC-ROC on the test series.
* ``tutorial05``: tutorial 05's fit on the bundled 300-stay PhysioNet sample (10 channels,
  Age / Gender / Height / ICUType as static covariates, 210 training / 90 test stays, 25
  epochs, no validation, ``class_weight="balanced"``), ``random_state`` 0, 1 and 2. Prints the
  test AUC-ROC.

Usage::

    python benchmarks/classifier_small.py --task oscillators --param head_inputs=latent+summary
    python benchmarks/classifier_small.py --task tutorial05 --param classifier_dropout=0.5
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parse_params  # noqa: E402

OMEGAS = (0.8, 1.8, 3.2)


def oscillator_classes(n_per_class: int, omegas=OMEGAS, seed: int = 0):
    """Damped oscillators of ``len(omegas)`` frequencies; label ``k`` = the k-th frequency
    (:func:`latentode.datasets.make_oscillator_classes`, as ``tests/test_classifier.py``)."""
    from latentode.datasets import make_oscillator_classes

    return make_oscillator_classes(n_per_class, omegas=omegas, random_state=seed)


def run_oscillators(params: dict[str, Any], seeds=(0, 1)) -> list[dict[str, Any]]:
    """Accuracy and one-vs-rest AUC-ROC of both classifier kinds on the test oscillators."""
    from sklearn.metrics import roc_auc_score

    from latentode import LatentODEClassifier

    df, y = oscillator_classes(60)
    test, yt = oscillator_classes(30, seed=10)
    rows = []
    for kind in ("latent", "encoder"):
        for rs in seeds:
            start = time.perf_counter()
            clf = LatentODEClassifier(**{
                "classifier": kind, "latent_dim": 4, "rec_dim": 12, "units": 24, "n_layers": 1,
                "gru_units": 16, "encoder": "gru", "gradient": "backprop", "solver": "rk4",
                "max_epochs": 20, "batch_size": 20, "early_stopping": False,
                "validation_fraction": 0.0, "verbose": 0, "device": "cpu", "random_state": rs,
                **params}).fit(df, y)
            proba = clf.predict_proba(test)
            rows.append({"task": "oscillators", "classifier": kind, "seed": rs,
                         "accuracy": clf.score(test, yt),
                         "auc_roc": roc_auc_score(yt.loc[proba.index], proba.to_numpy(),
                                                  multi_class="ovr"),
                         "fit_s": time.perf_counter() - start})
            print("oscillators {classifier} seed {seed}: accuracy {accuracy:.3f}, AUC-ROC "
                  "{auc_roc:.3f} ({fit_s:.0f} s)".format(**rows[-1]), flush=True)
    return rows


def run_tutorial05(params: dict[str, Any], seeds=(0, 1, 2)) -> list[dict[str, Any]]:
    """Tutorial 05's mortality fit on the bundled sample: test AUC-ROC per seed."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from latentode import LatentODEClassifier
    from latentode.datasets import load_physionet_sample

    df, outcomes = load_physionet_sample(return_outcomes=True)
    y = outcomes["In-hospital_death"]
    static = ["Age", "Gender", "Height", "ICUType"]
    df["ICUType"] = df["ICUType"].astype("category")
    df["Gender"] = df["Gender"].map({0.0: "female", 1.0: "male"})
    channels = ["HR", "MAP", "Temp", "GCS", "BUN", "Creatinine", "Lactate", "Urine", "pH", "WBC"]
    df = df[["id", "t", *channels, *static]]
    train_ids, test_ids = train_test_split(y.index.to_numpy(), test_size=0.3, random_state=0,
                                           stratify=y)
    train, test = df[df["id"].isin(train_ids)], df[df["id"].isin(test_ids)]
    rows = []
    for rs in seeds:
        start = time.perf_counter()
        clf = LatentODEClassifier(**{
            "classifier": "latent", "class_weight": "balanced", "latent_dim": 8, "rec_dim": 20,
            "units": 32, "n_layers": 1, "gru_units": 32, "encoder": "gru",
            "gradient": "backprop", "solver": "rk4", "max_epochs": 25, "batch_size": 30,
            "validation_fraction": 0.0, "random_state": rs, "verbose": 0, "device": "cpu",
            **params})
        clf.fit(train, y.loc[train_ids], target_cols=channels, static_cols=static)
        p = clf.predict_proba(test)[1].fillna(float(y.loc[train_ids].mean()))
        rows.append({"task": "tutorial05", "seed": rs,
                     "auc_roc": roc_auc_score(y.loc[p.index], p),
                     "fit_s": time.perf_counter() - start})
        print("tutorial05 seed {seed}: AUC-ROC {auc_roc:.3f} ({fit_s:.0f} s)".format(**rows[-1]),
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("oscillators", "tutorial05", "both"), default="both")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a LatentODEClassifier parameter (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    params = parse_params(args.param)
    rows: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.task in ("oscillators", "both"):
            rows += run_oscillators(params)
        if args.task in ("tutorial05", "both"):
            rows += run_tutorial05(params)
    table = pd.DataFrame(rows)
    print(f"settings: {params or 'the defaults'}")
    print(table.groupby(["task", *(["classifier"] if "classifier" in table else [])],
                        dropna=False)[[c for c in ("accuracy", "auc_roc") if c in table]]
          .mean().round(3).to_string())
    return rows


if __name__ == "__main__":
    main()
