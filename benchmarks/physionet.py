"""PhysioNet 2012 reproduction of the Latent ODE paper (Rubanova et al., 2019, Table 3; issue #5).

Protocol (following the paper's code, YuliaRubanova/latent_ode):

* all 8,000 stays of set-a + set-b, 41 parameters, times quantised to 0.016 h;
* the paper's scaling ``(x - min) / max`` per feature over the whole loaded data, with ``-1``
  descriptors kept as observed values as the paper does (``--unknown-as-nan`` drops them);
* 80/20 train/test split of the stays (``sklearn.model_selection.train_test_split``,
  ``random_state=42``, on the sorted RecordIDs);
* the paper's model size: latent 20, ODE-RNN encoder with 40 hidden units, dynamics MLP of
  3 x 50 units, GRU 50, batch 50, Adamax lr 1e-2, dopri5 rtol 1e-3 / atol 1e-4;
* the MSE of :func:`latentode.evaluation.paper_mse` on the paper's scale (per stay and feature
  over the evaluated entries, then over the 41 features (features without an entry count 0),
  then over stays).

Tasks, on the test stays:

``interpolation``
    Condition on all observed values of a stay and reconstruct them (the paper's PhysioNet
    "interpolation"; published 2.118e-3, 2.789e-3 with the Poisson process).
``extrapolation``
    Condition on the observations before 24 h and predict the observed values from 24 h on
    (published 2.231e-3, 2.208e-3 with Poisson) with
    :meth:`~latentode.LatentODERegressor.extrapolate`. The paper trains a separate model for
    this task, conditioned on the first half of each stay and scored on the second:
    ``--forecast-split 0.5``. Without it, the model trained to reconstruct forecasts.
``held-out interpolation``
    50 % of each test stay's observed values are hidden (each stay keeps its first observed
    row); the model conditions on the rest and is scored on the hidden values only, against
    per-stay linear interpolation in time and last observation carried forward (LOCF).
    ``--breakdown`` splits its squared errors, beside those of linear interpolation, LOCF and
    the stay's mean, by the hidden value's gap to the nearest visible value of its channel
    (:data:`GAP_EDGES_H`) and position (inside the channel's visible values, before the first
    or after the last, or in a stay without any), and by channel
    (:func:`latentode.evaluation.gap_breakdown`).

``--protocol tpatchgnn`` (instead of the three tasks above)
    The "first 24 h, forecast the next 24 h" protocol of t-PatchGNN (Zhang et al., ICML 2024,
    Table 1), read from its code (usail-hkust/t-PatchGNN): the 41 parameters at the records'
    minute resolution (no quantization), ``-1`` descriptors kept as values; stays split
    60 / 20 / 20 into train / validation / test (:func:`tpatch_split`); each parameter scaled
    as ``(x - min) / (max - min)`` with the train + validation stays' statistics; each test
    stay's values before 24 h condition the forecast of every observed value from 24 h on; MSE
    and MAE pooled per parameter over all test values, then averaged over the parameters
    (:func:`protocol_errors`), on the scaled values. t-PatchGNN reads set-a, b and c (12,000
    stays); the shared archive has set-a and set-b only, so this runs on their 8,000 stays
    (4,800 / 1,600 / 1,600) with the same proportions, not the same stays. The model is fitted
    on the train + validation stays with ``validation_fraction=0.25`` (its own draw of the
    protocol's validation share) for early stopping (``--patience``, t-PatchGNN's 10) and the
    best weights, without calibration (which changes no mean). Beside it, on the same values:
    per-stay LOCF, a per-stay least-squares linear trend of the first 24 h, the stay's mean
    of the first 24 h and the training mean. ``--forecast-split 0.5`` trains for the task.

``--static`` gives the descriptors Age, Gender, Height and ICUType as static covariates
(``static_cols``, ICUType one-hot) instead of channels observed at t = 0: the model conditions
on them and does not reconstruct them, so the three tasks score the other 37 channels only
(Weight, also measured later in a stay, stays a channel). ``--score-series-only`` keeps the
descriptors as channels but scores the same 37 channels and hides values of those channels
only, for a like-for-like comparison with ``--static``. The published figures, on all 41
features, are then not shown.

The flags' defaults are the paper's set-up, not the library's: no validation stays (so no early
stopping), the paper's exponential KL warm-up, ``readout="latent"`` and posterior-mean
predictions. ``--estimator-defaults`` fits ``LatentODERegressor()`` as a user gets it instead
(every parameter at the library's default but the run's own ``--epochs``, ``--seed``,
``--verbose``, ``--threads`` and ``--device``; model flags given beside it apply on top), on the
same data, split and tasks.

Hiding, baselines and scores are those of :mod:`latentode.evaluation`; this script holds the
protocol and the command line. Baselines fall back to the training mean of a feature where a
stay has no usable value. Model predictions are posterior means (the paper averages the MSE
over trajectory samples).

``--task classification`` (the paper's in-hospital mortality, Table 4 / sec. 5)
    The 4,000 stays of set-a with ``In-hospital_death``, the same 80/20 split (``random_state``
    = ``--seed``; ``--repeats R`` repeats it with seeds ``seed .. seed + R - 1`` and prints the
    mean and standard deviation), a :class:`~latentode.LatentODEClassifier` (the paper's
    Latent ODE classifier, ``ce_weight`` 100 unless ``--ce-weight``, the library's default
    being 10; ``--classifier encoder`` for its ODE-RNN classifier; no validation stays unless
    ``--val-fraction``, then early stopping on ``--scoring``; ``--classifier-dropout`` and
    ``--weight-decay`` regularise it; ``--head-inputs`` adds per-channel summaries of the
    observed values to what its head reads; ``--members K`` fits ``K`` classifiers of other
    ``random_state`` per split and scores their averaged probability too; ``--member-start M``
    makes them members ``M, M + 1, ...``; ``--save-proba PATH`` writes the test stays' labels
    and every member's and baseline's probability per split, and ``--ensemble-of PATH ...``
    averages such files paired per split without fitting) scored by AUC-ROC
    and AUC-PR on the test stays, beside a logistic regression
    on per-stay summary features (last, mean, min, max and count of every channel; missing
    features imputed with the training mean, standardised). A test stay with no observed
    channel (only descriptors) gets the training death rate. ``--static`` gives the descriptors
    Age, Gender, Height and ICUType as static covariates instead of channels (Weight, which is
    also measured later, stays a channel). ``--unlabelled-set-b`` adds the 4,000 stays of
    set-b to every split's training stays *without their labels* (set-b's outcomes file is
    never read; its values are scaled by set-a's statistics, as set-a is) and fits with
    ``semi_supervised=True``: they train the ELBO only; the test stays, the baseline and the
    labelled training stays are unchanged. Published AUC-ROC: Latent ODE (ODE-RNN encoder)
    0.829, ODE-RNN 0.833, GRU-D 0.818; mTAN 0.858.

Usage::

    python benchmarks/physionet.py                                  # the full protocol
    python benchmarks/physionet.py --subset 800 --epochs 5          # a few minutes on a CPU
    python benchmarks/physionet.py --estimator-defaults --epochs 18  # LatentODERegressor()
    python benchmarks/physionet.py --poisson --device cuda --out results.json
    python benchmarks/physionet.py --load model.pt --per-feature 8  # which features err most
    python benchmarks/physionet.py --load model.pt --breakdown  # held-out error by gap, channel
    python benchmarks/physionet.py --subset 1500 --epochs 6 --static  # descriptors: covariates
    python benchmarks/physionet.py --subset 1500 --epochs 6 --score-series-only  # ... channels
    python benchmarks/physionet.py --task classification --repeats 5 --static
    python benchmarks/physionet.py --protocol tpatchgnn --forecast-split 0.5 --readout neighbours
    python benchmarks/physionet.py --task classification --subset 1000 --epochs 5  # minutes
    python benchmarks/physionet.py --task classification --val-fraction 0.1 --unlabelled-set-b
    python benchmarks/physionet.py --ensemble-of odernn.csv mtan.csv  # two --save-proba runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "physionet2012"
QUANTIZATION = 0.016
CUTOFF_H = 24.0
MODEL_KEYS = ("encoder", "gradient", "poisson_process", "obs_weighting", "forecast_split",
              "obs_dropout", "obs_std", "lr_decay", "latent_dim", "readout", "readout_aux",
              "readout_reach", "forecast_share", "forecast_range", "point_prediction",
              "readout_sides", "forecast_noise", "forecast_mode")
GAP_EDGES_H = (0.5, 1.1, 3.0, 8.0)  # --breakdown: gap buckets (h); vitals come about hourly
BREAKDOWN_TOP = 10  # --breakdown: channels shown, by their share of the model's excess
CLASSIFIER_SCORINGS = ("log_loss", "roc_auc", "loss")  # --scoring: LatentODEClassifier's
REGRESSOR_SCORINGS = ("loss", "mse")  # --scoring: LatentODERegressor's (default: the first)
#: --estimator-defaults: the parameters set by the run, not the model (--epochs, --seed,
#: --verbose, --threads, --device)
RUN_PARAMS = ("max_epochs", "random_state", "verbose", "n_jobs", "device")
MEMBER_SEED_STEP = 1000  # --members: member m of split seed s has random_state s + 1000 m
PUBLISHED = {  # MSE of Rubanova et al. 2019, Table 3 (Latent ODE, ODE-RNN encoder)
    ("interpolation", False): 2.118e-3,
    ("interpolation", True): 2.789e-3,
    ("extrapolation", False): 2.231e-3,
    ("extrapolation", True): 2.208e-3,
}


# ------------------------------------------------------------------------------ data
def load_data(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], str]:
    """Load and scale the stays; return ``(frame, feature columns, source description)``."""
    return _load_stays(args, dict(quantization=QUANTIZATION, scaling="paper",
                                  unknown_as_nan=bool(args.unknown_as_nan)))


def _load_stays(args: argparse.Namespace, opts: dict[str, Any], note: str = ""
                ) -> tuple[pd.DataFrame, list[str], str]:
    """The archive at ``--data`` (or the bundled sample with ``--allow-sample``) read with the
    loader options ``opts``; ``note`` is added to the archive's description."""
    from latentode.datasets import (
        PHYSIONET_PARAMETERS,
        load_physionet2012,
        load_physionet_sample,
    )

    path = Path(args.data) if args.data else DEFAULT_DATA
    if path.exists():
        df = load_physionet2012(path, **opts)
        source = f"archive {path}{note}"
    elif args.allow_sample:
        df = load_physionet_sample(**opts)
        source = "bundled 300-stay sample (archive not found)"
    else:
        raise SystemExit(f"PhysioNet archive not found at {path}; pass --data PATH "
                         "(or --allow-sample to use the bundled 300 stays)")
    return df, list(PHYSIONET_PARAMETERS), source


def epochs_seconds(est: Any) -> float:
    """Wall seconds of a fitted estimator's epochs (training and validation loss), summed over
    ``history_.records`` (warm starts included): the fit without the data's preparation and
    the interval calibration."""
    return float(sum(r["seconds"] for r in est.history_.records))


def split_stays(
    df: pd.DataFrame, subset: int | None, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Optional random subset of stays, then the paper's 80/20 split (``random_state=42``)."""
    from sklearn.model_selection import train_test_split

    ids = np.sort(df["id"].unique())
    if subset is not None and subset < len(ids):
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=subset, replace=False))
    train_ids, test_ids = train_test_split(ids, train_size=0.8, random_state=seed, shuffle=True)
    train = df[df["id"].isin(train_ids)].reset_index(drop=True)
    test = df[df["id"].isin(test_ids)].reset_index(drop=True)
    return train, test


# ------------------------------------------------------------------------------ classification
PUBLISHED_AUC = {"Latent ODE (ODE-RNN enc.)": 0.829, "ODE-RNN": 0.833, "GRU-D": 0.818,
                 "mTAN": 0.858}
OUTCOME = "In-hospital_death"
STATIC = ["Age", "Gender", "Height", "ICUType"]  # the descriptors recorded once per stay


def load_labelled(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.Series, str]:
    """Set-a with its mortality labels: ``(frame, labels indexed by id, source)``."""
    from latentode.datasets import load_physionet2012, load_physionet_sample

    path = Path(args.data) if args.data else DEFAULT_DATA
    opts = dict(quantization=QUANTIZATION, scaling="paper", unknown_as_nan=True,
                return_outcomes=True)
    if path.exists():
        df, outcomes = load_physionet2012(path, sets="a", **opts)
        source = f"archive {path} (set-a)"
    elif args.allow_sample:
        df, outcomes = load_physionet_sample(**opts)
        source = "bundled 300-stay sample (archive not found)"
    else:
        raise SystemExit(f"PhysioNet archive not found at {path}; pass --data PATH "
                         "(or --allow-sample to use the bundled 300 stays)")
    labels = outcomes[OUTCOME].astype(int)
    return df, labels[labels.index.isin(df["id"].unique())], source


def load_unlabelled(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """Set-b's stays *without* their outcomes, scaled as :func:`load_labelled` scales set-a.

    ``load_labelled`` scales set-a by its own minimum and maximum (``scaling="paper"``); set-b
    is read unscaled and scaled by set-a's statistics, so a value means the same in both. Only
    the records are read (``return_outcomes=False``): the archive's ``Outcomes-b.txt`` is never
    opened. Needs the archive (the bundled sample holds set-a stays only).
    """
    from latentode.datasets import load_physionet2012, physionet_minmax, scale_physionet

    path = Path(args.data) if args.data else DEFAULT_DATA
    if not path.exists():
        raise SystemExit(f"--unlabelled-set-b needs the PhysioNet archive (set-b), not found at "
                         f"{path}; pass --data PATH")
    opts = dict(quantization=QUANTIZATION, unknown_as_nan=True)
    set_a = load_physionet2012(path, sets="a", **opts)
    set_b = load_physionet2012(path, sets="b", **opts)
    return (scale_physionet(set_b, "paper", minmax=physionet_minmax(set_a)),
            f"archive {path} (set-b, labels not read)")


def summary_features(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Per-stay last, mean, min, max and count of every channel (NaN where never measured)."""
    g = df.sort_values(["id", "t"]).groupby("id")[cols]
    parts = {"last": g.last(), "mean": g.mean(), "min": g.min(), "max": g.max(),
             "count": g.count()}
    return pd.concat(parts, axis=1)


def summary_baseline(train: pd.DataFrame, y_train: pd.Series, test: pd.DataFrame,
                     cols: list[str], model: str = "logistic") -> pd.Series:
    """Mortality probability of each test stay from a classifier on per-stay summary features.

    ``model="logistic"``: mean imputation, standardisation and a logistic regression;
    ``"boosting"``: scikit-learn's histogram gradient boosting (300 trees, learning rate 0.05,
    seeded), which takes the missing summaries of channels a stay never measured as they are.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = summary_features(train, cols), summary_features(test, cols)
    if model == "logistic":
        clf: Any = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                                 StandardScaler(), LogisticRegression(max_iter=2000))
    elif model == "boosting":  # a summary no training stay has carries nothing (and would
        # fail the binning): dropped
        seen = x_train.columns[x_train.notna().any()]
        x_train, x_test = x_train[seen], x_test[seen]
        clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    else:
        raise ValueError(f"model must be 'logistic' or 'boosting', got {model!r}")
    clf.fit(x_train, y_train.loc[x_train.index])
    return pd.Series(clf.predict_proba(x_test)[:, 1], index=x_test.index)


def build_classifier(args: argparse.Namespace) -> Any:
    """The :class:`~latentode.LatentODEClassifier` the arguments describe (not fitted)."""
    from latentode import LatentODEClassifier

    kl_warmup: Any = args.kl_warmup
    if kl_warmup not in ("exponential", "none"):
        kl_warmup = float(kl_warmup)
    return LatentODEClassifier(
        classifier=args.classifier, ce_weight=args.ce_weight,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        scoring=args.scoring, patience=args.patience,
        classifier_dropout=args.classifier_dropout, weight_decay=args.weight_decay,
        latent_dim=args.latent_dim, encoder=args.encoder, rec_dim=args.rec_dim, units=args.units,
        n_layers=args.n_layers, gru_units=args.gru_units, gradient=args.gradient,
        mtan_ref_points=getattr(args, "mtan_ref_points", 64),
        mtan_embed_dim=getattr(args, "mtan_embed_dim", None),
        solver=args.solver, n_traj_samples=3, max_epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
        obs_weighting=args.obs_weighting, kl_warmup=None if kl_warmup == "none" else kl_warmup,
        validation_fraction=args.val_fraction,
        early_stopping=args.val_fraction > 0 and not args.no_early_stopping,
        obs_std="learned" if args.obs_std == "learned" else float(args.obs_std),
        calibrate=False, device=args.device, random_state=args.seed, verbose=args.verbose,
        n_jobs=getattr(args, "threads", 1) or -1,
        semi_supervised=bool(getattr(args, "unlabelled_set_b", False)),
        head_inputs=getattr(args, "head_inputs", "latent"),
        weight_averaging=getattr(args, "weight_averaging", 0.0),
        obs_dropout=getattr(args, "obs_dropout", 0.0),
    )


class TestTrace:
    """``--trace``: the test stays' AUC-ROC after every epoch (a diagnostic, not a protocol).

    A callback of the training loop: it predicts the test stays with the epoch's weights as
    :meth:`~latentode.LatentODEClassifier.predict_proba` does (stays with nothing observed get
    ``fill``, as in the benchmark), so the entry of the epoch whose weights a rule restores is
    that rule's test AUC-ROC. Beside it, ``aucs_mc`` / ``aps_mc`` score the class probability
    averaged over 32 posterior samples of ``z_t0`` instead of the classifier at its posterior
    mean (what :meth:`predict_proba` reads). ``clf`` must already hold the time encoder and
    scaler that the fit will use (a fit with ``max_epochs=0`` on the same training stays).
    """

    def __init__(self, clf: Any, test: pd.DataFrame, truth: pd.Series, fill: float) -> None:
        from latentode import data as _data

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            vf, padded = clf._prepare(test)
        self.live = np.flatnonzero(padded.lengths > 0)
        self.sub = _data.subset(padded, self.live)
        self.truth = truth.loc[vf.series_ids].to_numpy()
        self.fill, self.batch_size = fill, int(clf.batch_size)
        self.mc_samples = 32
        self.aucs: list[float] = []
        self.aps: list[float] = []
        self.aucs_mc: list[float] = []  # probability averaged over posterior samples of z_t0
        self.aps_mc: list[float] = []

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: Any) -> bool:
        import torch
        from sklearn.metrics import average_precision_score, roc_auc_score

        from latentode import data as _data

        proba = np.full(len(self.truth), self.fill)
        proba_mc = proba.copy()
        param = next(model.parameters())
        was_training = model.training
        model.eval()
        gen = torch.Generator(device=param.device).manual_seed(epoch)
        out, out_mc = [], []
        with torch.no_grad():
            for b in _data.iterate_batches(self.sub, self.batch_size, device=param.device,
                                           dtype=param.dtype):
                out.append(torch.softmax(model.classify(b), -1)[:, 1].double().cpu().numpy())
                mu, std = model.encode(b, b.times[:, 0])
                eps = torch.randn((self.mc_samples, *mu.shape), generator=gen,
                                  device=mu.device, dtype=mu.dtype)
                p = torch.softmax(model.classify(b, mu + std * eps), -1).mean(0)
                out_mc.append(p[:, 1].double().cpu().numpy())
        model.train(was_training)
        proba[self.live] = np.concatenate(out)
        proba_mc[self.live] = np.concatenate(out_mc)
        self.aucs.append(float(roc_auc_score(self.truth, proba)))
        self.aps.append(float(average_precision_score(self.truth, proba)))
        self.aucs_mc.append(float(roc_auc_score(self.truth, proba_mc)))
        self.aps_mc.append(float(average_precision_score(self.truth, proba_mc)))
        return False


def stopping_rules(curves: dict[str, list[Any]], test_auc: list[float], test_ap: list[float],
                   max_epochs: int, patiences: Sequence[int] = (5, 10, 20)) -> dict[str, Any]:
    """The epoch each early-stopping rule (monitored entry, patience) restores, and its test
    AUC-ROC and AUC-PR, replayed from one run's per-epoch records (the loop's rule: strict
    improvement, stop after ``patience`` epochs without one). None where the run ended before
    the rule would have stopped (short of ``max_epochs``)."""
    out: dict[str, Any] = {}
    n = len(test_auc)
    for key, sign in (("val_loss", 1.0), ("val_log_loss", 1.0), ("val_roc_auc", -1.0)):
        for patience in patiences:
            best, best_e, bad, stopped = np.inf, None, 0, False
            for e, v in enumerate(curves.get(key) or []):
                if v is not None and np.isfinite(v) and sign * v < best:
                    best, best_e, bad = sign * v, e, 0
                else:
                    bad += 1
                if bad >= patience:
                    stopped = True
                    break
            ok = best_e is not None and (stopped or n >= max_epochs)
            out[f"{key}/p{patience}"] = {"epoch": best_e if ok else None,
                                         "test_auc": test_auc[best_e] if ok else None,
                                         "test_ap": test_ap[best_e] if ok else None}
    return out


def proba_frame(split_seed: int, truth: pd.Series, members: Sequence[pd.Series],
                member_ids: Sequence[int], baselines: dict[str, pd.Series]) -> pd.DataFrame:
    """``--save-proba``: one split's test stays as rows: ``split_seed``, ``id``, ``label``,
    each member's probability (``member_<m>``, ``m`` its member index: random_state
    ``split_seed + 1000 m``) and each baseline's (``<name>``), in the order of ``truth``."""
    frame = pd.DataFrame({"split_seed": split_seed, "id": truth.index.to_numpy(),
                          "label": truth.to_numpy().astype(int)})
    for m, p in zip(member_ids, members):
        frame[f"member_{m}"] = p.loc[truth.index].to_numpy()
    for name, p in baselines.items():
        frame[name] = p.loc[truth.index].to_numpy()
    return frame


def run_classification(args: argparse.Namespace) -> dict[str, Any]:
    """Fit and score the mortality classifier and the baseline on ``--repeats`` splits."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from latentode.datasets import PHYSIONET_PARAMETERS

    start = time.perf_counter()
    df, labels, source = load_labelled(args)
    static = STATIC if args.static else []
    cols = [c for c in PHYSIONET_PARAMETERS if c not in static]
    numeric = df  # the baseline's features read ICUType as a number
    if static:
        df = df.assign(ICUType=df["ICUType"].astype("category"))
    ids = np.sort(labels.index.to_numpy())
    if args.subset is not None and args.subset < len(ids):
        ids = np.sort(np.random.default_rng(args.seed).choice(ids, size=args.subset,
                                                              replace=False))
    print(f"{source}: {len(ids)} labelled stays, {int(labels.loc[ids].sum())} deaths "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    unlabelled = None
    if args.unlabelled_set_b:
        unlabelled, source_b = load_unlabelled(args)
        if static:
            unlabelled = unlabelled.assign(ICUType=pd.Categorical(
                unlabelled["ICUType"], categories=df["ICUType"].cat.categories))
        shared = np.intersect1d(unlabelled["id"].unique(), df["id"].unique())
        if len(shared):
            raise SystemExit(f"set-b shares {len(shared)} RecordIDs with set-a; cannot add it")
        source += f" + {unlabelled['id'].nunique()} unlabelled stays of {source_b}"
        print(f"{source_b}: {unlabelled['id'].nunique()} unlabelled training stays added to "
              f"every split ({time.perf_counter() - start:.0f} s)", flush=True)
    rows: list[dict[str, Any]] = []
    saved: list[pd.DataFrame] = []  # --save-proba: the test stays' probabilities per split
    for r in range(args.repeats):
        seed = args.seed + r
        train_ids, test_ids = train_test_split(ids, train_size=0.8, random_state=seed,
                                               shuffle=True)
        train = df[df["id"].isin(train_ids)].reset_index(drop=True)
        test = df[df["id"].isin(test_ids)].reset_index(drop=True)
        if unlabelled is not None:  # no label for them: y below covers set-a's stays only
            train = pd.concat([train, unlabelled], ignore_index=True)
        first = getattr(args, "member_start", 0)  # member index of the first fit
        clf = build_classifier(args).set_params(random_state=seed + MEMBER_SEED_STEP * first)
        fit_args = dict(time_col="t", id_col="id", target_cols=cols, static_cols=static or None)
        trace = None
        if args.trace:
            clf.set_params(max_epochs=0).fit(train, labels.loc[train_ids], **fit_args)
            trace = TestTrace(clf, test, labels, float(labels.loc[train_ids].mean()))
            clf.set_params(max_epochs=args.epochs, callbacks=[trace])
        t0 = time.perf_counter()
        clf.fit(train, labels.loc[train_ids], **fit_args)
        fit_s = time.perf_counter() - t0
        with warnings.catch_warnings():  # stays with only descriptors: counted below
            warnings.simplefilter("ignore", UserWarning)
            proba = clf.predict_proba(test)[1]
        no_obs = int(proba.isna().sum())  # nothing to condition on: the training death rate
        fill = float(labels.loc[train_ids].mean())
        proba = proba.fillna(fill)
        truth = labels.loc[proba.index]
        members = [proba]
        for m in range(first + 1, first + args.members):  # other seeds: initialisation,
            # validation stays, order
            other = build_classifier(args).set_params(random_state=seed + MEMBER_SEED_STEP * m)
            other.fit(train, labels.loc[train_ids], **fit_args)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                members.append(other.predict_proba(test)[1].fillna(fill).loc[proba.index])
            print(f"  member {m} (random_state {seed + MEMBER_SEED_STEP * m}): AUC-ROC "
                  f"{roc_auc_score(truth, members[-1]):.3f}, best epoch "
                  f"{other.history_.best_epoch}", flush=True)
        base, boost = (summary_baseline(numeric[numeric["id"].isin(train_ids)], labels,
                                        numeric[numeric["id"].isin(test_ids)],
                                        list(PHYSIONET_PARAMETERS), model)
                       for model in ("logistic", "boosting"))
        if args.save_proba:
            saved.append(proba_frame(seed, truth, members, range(first, first + args.members),
                                     {"logistic": base, "boosting": boost}))
        epochs = clf.history_.n_epochs
        rows.append({
            "split_seed": seed, "auc_roc": roc_auc_score(truth, proba),
            "auc_pr": average_precision_score(truth, proba),
            "baseline_auc_roc": roc_auc_score(labels.loc[base.index], base),
            "baseline_auc_pr": average_precision_score(labels.loc[base.index], base),
            "boosting_auc_roc": roc_auc_score(labels.loc[boost.index], boost),
            "boosting_auc_pr": average_precision_score(labels.loc[boost.index], boost),
            "epochs": epochs, "best_epoch": clf.history_.best_epoch, "fit_s": fit_s,
            "s_per_epoch": fit_s / max(epochs, 1),
            "n_train": len(train_ids), "n_test": len(test_ids),
            "n_unlabelled": 0 if unlabelled is None else int(unlabelled["id"].nunique()),
            "test_deaths": int(truth.sum()), "test_no_obs": no_obs,
            "val_curves": {k: clf.history_[k] for k in ("val_loss", "val_log_loss", "val_roc_auc")},
        })
        if args.members > 1:
            mean = pd.concat(members, axis=1).mean(axis=1)
            rows[-1].update(members=args.members,
                            member_auc_roc=[roc_auc_score(truth, p) for p in members],
                            ensemble_auc_roc=roc_auc_score(truth, mean),
                            ensemble_auc_pr=average_precision_score(truth, mean))
            print(f"  {args.members} members' averaged probability: AUC-ROC "
                  f"{rows[-1]['ensemble_auc_roc']:.3f}, AUC-PR {rows[-1]['ensemble_auc_pr']:.3f}",
                  flush=True)
        if trace is not None:
            rows[-1]["test_auc_per_epoch"] = trace.aucs
            rows[-1]["test_ap_per_epoch"] = trace.aps
            rows[-1]["rules"] = stopping_rules(rows[-1]["val_curves"], trace.aucs, trace.aps,
                                               args.epochs)
            rows[-1]["test_auc_mc_per_epoch"] = trace.aucs_mc
            rows[-1]["rules_mc"] = stopping_rules(rows[-1]["val_curves"], trace.aucs_mc,
                                                  trace.aps_mc, args.epochs)
            print("  test AUC-ROC per epoch: " + " ".join(f"{a:.3f}" for a in trace.aucs)
                  + "\n  rules (monitored entry / patience: restored epoch, test AUC-ROC): "
                  + ", ".join(f"{k}: {v['epoch']}, "
                              + ("-" if v["test_auc"] is None else f"{v['test_auc']:.3f}")
                              for k, v in rows[-1]["rules"].items()), flush=True)
        print("split {split_seed}: AUC-ROC {auc_roc:.3f} (logistic {baseline_auc_roc:.3f}, "
              "boosting {boosting_auc_roc:.3f}), AUC-PR {auc_pr:.3f} (logistic "
              "{baseline_auc_pr:.3f}, boosting {boosting_auc_pr:.3f}), {epochs} epochs (best "
              "{best_epoch}), {s_per_epoch:.1f} s/epoch".format(**rows[-1]), flush=True)
    if args.save_proba:
        parent = os.path.dirname(args.save_proba)
        if parent:
            os.makedirs(parent, exist_ok=True)
        pd.concat(saved, ignore_index=True).to_csv(args.save_proba, index=False,
                                                   float_format="%.17g")
        print(f"test probabilities written to {args.save_proba}", flush=True)
    return {"task": "classification", "rows": rows, "source": source, "static": static,
            "total_s": time.perf_counter() - start, "args": vars(args)}


def format_classification(res: dict[str, Any]) -> str:
    """Per-split figures and their mean +- standard deviation."""
    table = pd.DataFrame(res["rows"]).set_index("split_seed")
    a = res["args"]
    n_unlabelled = int(table["n_unlabelled"].iloc[0]) if "n_unlabelled" in table else 0
    extra = (f" (+ {n_unlabelled} unlabelled training stays, semi_supervised=True)"
             if n_unlabelled else "")
    head = (f"PhysioNet 2012 in-hospital mortality ({res['source']}), "
            f"{table['n_train'].iloc[0]} train / {table['n_test'].iloc[0]} test stays per "
            f"split{extra}; LatentODEClassifier(classifier={a['classifier']!r}, encoder "
            f"{a['encoder']}, "
            f"ce_weight {a['ce_weight']}, class_weight {a['class_weight']}, validation "
            f"{a['val_fraction']}, scoring {a['scoring']}, head_inputs "
            f"{a.get('head_inputs', 'latent')}, classifier_dropout "
            f"{a.get('classifier_dropout', 0.0)}, weight_averaging "
            f"{a.get('weight_averaging', 0.0)}), static "
            f"{res['static'] or 'none'}; baselines on last / mean / min / max / count per "
            f"channel: logistic regression (baseline_*) and gradient boosting (boosting_*). "
            f"Published AUC-ROC: "
            + ", ".join(f"{k} {v}" for k, v in PUBLISHED_AUC.items()) + ".")
    ensemble = ["ensemble_auc_roc", "ensemble_auc_pr"] if "ensemble_auc_roc" in table else []
    if ensemble:
        head += (f" ensemble_*: the probability averaged over {int(table['members'].iloc[0])} "
                 f"classifiers (random_state seed + {MEMBER_SEED_STEP} m), auc_* its first.")
    scores = ["auc_roc", *ensemble[:1], "baseline_auc_roc", "boosting_auc_roc", "auc_pr",
              *ensemble[1:], "baseline_auc_pr", "boosting_auc_pr"]
    shown = table[[*scores, "epochs", "best_epoch", "s_per_epoch", "test_deaths"]]
    text = head + "\n" + shown.to_string(float_format=lambda v: f"{v:.3f}")
    if len(table) > 1:
        stats = ", ".join(f"{c} {table[c].mean():.3f} +- {table[c].std(ddof=1):.3f}"
                          for c in scores)
        text += f"\nmean +- sd over {len(table)} splits: {stats}"
        if ensemble:
            gain = table["ensemble_auc_roc"] - table["auc_roc"]
            text += ("\nensemble - first member, AUC-ROC per split: "
                     + " / ".join(f"{g:+.3f}" for g in gain)
                     + f"; mean {gain.mean():+.4f} (standard error "
                     f"{gain.std(ddof=1) / np.sqrt(len(gain)):.4f})")
    for key, how in (("rules", ""), ("rules_mc", ", probability averaged over 32 samples of "
                                              "z_t0")):
        if key not in table:
            continue
        for what, name in (("test_auc", "AUC-ROC"), ("test_ap", "AUC-PR")):
            rules = pd.DataFrame({seed: {k: v[what] for k, v in r.items()}
                                  for seed, r in table[key].items()}).astype(float)
            text += (f"\n--trace: test {name}{how} of the epoch each early-stopping rule restores "
                     "(replayed from the per-epoch records; NaN: the run ended first)\n"
                     + rules.assign(mean=rules.mean(axis=1),
                                    sd=rules.std(axis=1, ddof=1)).to_string(
                         float_format=lambda v: f"{v:.3f}"))
    return text


# ------------------------------------------------------------------------------ ensembles
PROBA_KEYS = ("split_seed", "id", "label")  # --save-proba: what pairs the rows of two files
PROBA_BASELINES = ("logistic", "boosting")


def pair_proba(frames: Sequence[pd.DataFrame], names: Sequence[str]) -> pd.DataFrame:
    """The ``--save-proba`` frames ``frames`` (called ``names``) side by side, paired per split.

    Every frame must hold the same splits with the same test stays and labels (else a
    ValueError names the file and the split); their baselines, fitted on the same stays, must
    agree. Returns one row per (split, stay): ``split_seed``, ``id``, ``label``, the baselines
    and each frame's members as ``<name>/member_<m>``, sorted by split and stay.
    """
    if len(frames) != len(names) or not frames:
        raise ValueError("pair_proba needs one name per frame and at least one frame")
    if len(set(names)) != len(names):
        raise ValueError(f"the inputs need distinct names, got {list(names)}")
    out: pd.DataFrame | None = None
    for frame, name in zip(frames, names):
        missing = [c for c in PROBA_KEYS if c not in frame]
        members = [c for c in frame if c.startswith("member_")]
        if missing or not members:
            raise ValueError(f"{name}: not a --save-proba file (no column "
                             f"{', '.join(missing) or 'member_*'})")
        if frame.duplicated(["split_seed", "id"]).any():
            raise ValueError(f"{name}: a stay appears twice in one split")
        frame = frame.sort_values(["split_seed", "id"]).reset_index(drop=True)
        renamed = frame[list(PROBA_KEYS)].assign(
            **{f"{name}/{c}": frame[c] for c in members},
            **{c: frame[c] for c in PROBA_BASELINES if c in frame})
        if out is None:
            out = renamed
            continue
        first = names[0]
        for seed in sorted(set(out["split_seed"]) | set(renamed["split_seed"])):
            a, b = out[out["split_seed"] == seed], renamed[renamed["split_seed"] == seed]
            if a.empty or b.empty:
                raise ValueError(f"split {seed} is in {first if b.empty else name} only; "
                                 "the inputs must hold the same splits (--seed, --repeats)")
            if not np.array_equal(a["id"].to_numpy(), b["id"].to_numpy()):
                raise ValueError(f"split {seed}: {name} has other test stays than {first} "
                                 "(another --subset or data?)")
            if not np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
                raise ValueError(f"split {seed}: {name} labels the test stays otherwise "
                                 f"than {first}")
        for c in PROBA_BASELINES:
            if c in out and c in renamed and not np.allclose(out[c], renamed[c], atol=1e-9):
                raise ValueError(f"{name}: the {c} baseline differs from {first}'s on the "
                                 "same stays (other data options?)")
        out = pd.concat([out, renamed.drop(columns=[*PROBA_KEYS, *PROBA_BASELINES],
                                           errors="ignore")], axis=1)
    assert out is not None
    return out


def ensemble_table(paired: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Per split: AUC-ROC and AUC-PR of each input (the mean of its members' probabilities),
    of the ensemble (the mean over every member of every input: each fit weighs the same),
    of the baselines and of the ensemble averaged half and half with gradient boosting."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rows = {}
    for seed, split in paired.groupby("split_seed"):
        y = split["label"].to_numpy()
        members = [c for c in split if "/member_" in c]
        probas = {name: split[[c for c in members if c.rsplit("/member_", 1)[0] == name]]
                  .mean(axis=1) for name in names}
        probas["ensemble"] = split[members].mean(axis=1)
        for c in PROBA_BASELINES:
            if c in split:
                probas[c] = split[c]
        if "boosting" in split:
            probas["ensemble+boosting"] = (probas["ensemble"] + split["boosting"]) / 2
        rows[seed] = {**{f"{k}_auc_roc": roc_auc_score(y, p) for k, p in probas.items()},
                      **{f"{k}_auc_pr": average_precision_score(y, p)
                         for k, p in probas.items()},
                      "fits": len(members), "test_deaths": int(y.sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "split_seed"
    return table


def run_ensemble(args: argparse.Namespace) -> dict[str, Any]:
    """``--ensemble-of``: score the averaged probabilities of saved runs, paired per split."""
    paths = [Path(p) for p in args.ensemble_of]
    names = [p.stem for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    paired = pair_proba([pd.read_csv(p) for p in paths], names)
    return {"task": "ensemble", "names": names,
            "table": ensemble_table(paired, names).reset_index().to_dict("records")}


def format_ensemble(res: dict[str, Any]) -> str:
    """Per-split AUC-ROC / AUC-PR, their mean +- sd and the ensemble's paired differences."""
    table = pd.DataFrame(res["table"]).set_index("split_seed")
    names = res["names"]
    keys = [*names, "ensemble", *[k for k in (*PROBA_BASELINES, "ensemble+boosting")
                                  if f"{k}_auc_roc" in table]]
    text = (f"averaged probabilities of {', '.join(names)} ({int(table['fits'].iloc[0])} fits "
            "per split, each weighing the same; an input: the mean of its own members), "
            "paired per split; ensemble+boosting: the ensemble and gradient boosting half and "
            "half")
    for metric, label in (("auc_roc", "AUC-ROC"), ("auc_pr", "AUC-PR")):
        cols = table[[f"{k}_{metric}" for k in keys]].set_axis(keys, axis=1)
        text += f"\n{label} per split\n" + cols.to_string(float_format=lambda v: f"{v:.3f}")
        if len(cols) > 1:
            text += "\nmean +- sd: " + ", ".join(
                f"{k} {cols[k].mean():.4f} +- {cols[k].std(ddof=1):.3f}" for k in keys)
            for a, others in (("ensemble", [k for k in keys if not k.startswith("ensemble")]),
                              ("ensemble+boosting", ["ensemble", "boosting"])):
                if a not in cols:
                    continue
                for b in others:
                    if b == a or b not in cols:
                        continue
                    d = cols[a] - cols[b]
                    text += (f"\n{a} - {b}: " + " / ".join(f"{v:+.3f}" for v in d)
                             + f"; mean {d.mean():+.4f} (standard error "
                             f"{d.std(ddof=1) / np.sqrt(len(d)):.4f})")
    return text


# ------------------------------------------------------------------------------ main
def _flag_estimator(args: argparse.Namespace) -> Any:
    """The :class:`~latentode.LatentODERegressor` the model flags describe, each parameter
    from its flag (this script's defaults, the paper's set-up, where a flag is not given)."""
    from latentode import LatentODERegressor
    from latentode.demo import given_forecast_options

    kl_warmup: Any = args.kl_warmup
    if kl_warmup not in ("exponential", "none"):
        kl_warmup = float(kl_warmup)
    return LatentODERegressor(
        latent_dim=args.latent_dim, encoder=args.encoder, rec_dim=args.rec_dim, units=args.units,
        n_layers=args.n_layers, gru_units=args.gru_units, gradient=args.gradient,
        mtan_ref_points=getattr(args, "mtan_ref_points", 64),
        mtan_embed_dim=getattr(args, "mtan_embed_dim", None),
        solver=args.solver, n_traj_samples=3, max_epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
        obs_weighting=args.obs_weighting, forecast_split=args.forecast_split,
        obs_dropout=args.obs_dropout,
        kl_warmup=None if kl_warmup == "none" else kl_warmup,
        validation_fraction=args.val_fraction,
        early_stopping=args.val_fraction > 0 and not getattr(args, "no_early_stopping", False),
        patience=getattr(args, "patience", 10),
        scoring=getattr(args, "scoring", None) or "loss",
        obs_std="learned" if args.obs_std == "learned" else float(args.obs_std),
        poisson_process=args.poisson, device=args.device, random_state=args.seed,
        verbose=args.verbose, n_jobs=getattr(args, "threads", 1) or -1,
        linear_term=getattr(args, "linear_term", False),
        readout=getattr(args, "readout", "latent"),
        readout_aux=getattr(args, "readout_aux", 1.0),
        readout_reach=getattr(args, "readout_reach", "window"),
        forecast_range=tuple(getattr(args, "forecast_range", (0.2, 0.8))),
        **given_forecast_options(args),
        dynamics_activation=getattr(args, "dynamics_activation", "tanh"),
        likelihood=getattr(args, "likelihood", "gaussian"),
        posterior_time=getattr(args, "posterior_time", "first"),
        input_fences=getattr(args, "input_fences", None),
        point_prediction=getattr(args, "point_prediction", None) or "posterior_mean",
    )


def library_flag_defaults() -> dict[str, Any]:
    """Defaults of the flags whose own default (the paper's set-up) is not the library's: the
    values that give :class:`~latentode.LatentODERegressor`'s defaults (``--estimator-defaults``).
    """
    from latentode import LatentODERegressor

    d = LatentODERegressor().get_params()
    return {"val_fraction": d["validation_fraction"] if d["early_stopping"] else 0.0,
            "kl_warmup": "none" if d["kl_warmup"] is None else str(d["kl_warmup"]),
            "readout": d["readout"], "point_prediction": d["point_prediction"]}


def build_estimator(args: argparse.Namespace) -> Any:
    """The :class:`~latentode.LatentODERegressor` the arguments describe (not fitted).

    With ``--estimator-defaults`` (``args.flag_defaults``: the arguments of the command line
    ``--estimator-defaults`` alone), every parameter is the library's default but
    ``max_epochs``, ``random_state``, ``verbose``, ``n_jobs`` and ``device`` (the run's own
    settings) and those the given flags change; parameters no flag sets (``n_traj_samples``)
    are the library's too.
    """
    from latentode import LatentODERegressor

    est = _flag_estimator(args)
    reference = getattr(args, "flag_defaults", None)
    if not getattr(args, "estimator_defaults", False) or reference is None:
        return est
    given = est.get_params()
    bare = _flag_estimator(argparse.Namespace(**reference)).get_params()
    changed = {k: v for k, v in given.items() if v != bare[k] and k not in RUN_PARAMS}
    print("LatentODERegressor() defaults"
          + (f" but {', '.join(f'{k}={v!r}' for k, v in changed.items())}" if changed else ""),
          flush=True)
    return LatentODERegressor(**{k: given[k] for k in RUN_PARAMS}, **changed)


def descriptor_roles(
    df: pd.DataFrame, cols: list[str], static: bool, series_only: bool
) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """Where the descriptors go: ``(frame, channels, static columns, scored columns)``.

    With ``static`` the descriptors of :data:`STATIC` leave the channels; each stay's value is
    copied onto all of its rows (a conditioning window that starts after t = 0 keeps it) and
    ICUType becomes categorical (a code, one-hot encoded). The scored columns are the channels
    but the descriptors with ``static`` or ``series_only``, otherwise all of ``cols``. The
    caller's frame is not modified.
    """
    scored = [c for c in cols if c not in STATIC] if static or series_only else list(cols)
    if not static:
        return df, list(cols), [], scored
    per_stay = df.groupby("id")[STATIC].transform("first")  # the one value of each stay
    df = df.assign(**{c: per_stay[c] for c in STATIC})
    df["ICUType"] = df["ICUType"].astype("category")
    return df, scored, list(STATIC), scored


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, fit, evaluate the three tasks; return the results dictionary."""
    import torch

    from latentode import LatentODERegressor
    from latentode.evaluation import (
        channel_mean,
        hide_values,
        linear_interpolation,
        locf,
        paper_mse_frame,
        paper_mse_shares,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    df, all_cols, source = load_data(args)
    df, cols, static, scored = descriptor_roles(df, all_cols, bool(args.static),
                                                bool(args.score_series_only))
    train, test = split_stays(df, args.subset)
    # stays need two observed time points to be fitted
    train = train[train.groupby("id")["t"].transform("size") >= 2].reset_index(drop=True)
    load_s = time.perf_counter() - start
    print(f"{source}: {df['id'].nunique()} stays loaded; {train['id'].nunique()} training / "
          f"{test['id'].nunique()} test stays ({load_s:.0f} s)", flush=True)

    saved = args.load or args.resume
    if saved:
        est = LatentODERegressor.load(saved, device=None if args.device == "auto"
                                      else args.device)
        trained_s = epochs_seconds(est)
    else:
        est, trained_s = build_estimator(args), 0.0
    if getattr(args, "point_prediction", None):  # a saved model predicts under the rule asked
        est.set_params(point_prediction=args.point_prediction)
    if args.load:
        fit_s = trained_s
        print(f"loaded {args.load} (trained {est.history_.n_epochs} epoch(s) in {fit_s:.0f} s)",
              flush=True)
    else:
        if args.resume:  # warm start: KL weight 1 from the first step, the given lr / decay
            est.set_params(warm_start=True, max_epochs=args.epochs, lr=args.lr,
                           lr_decay=args.lr_decay, kl_warmup=None, verbose=args.verbose)
        t0 = time.perf_counter()
        est.fit(train, time_col="t", id_col="id", target_cols=cols,
                static_cols=static or None)
        fit_s = time.perf_counter() - t0 + trained_s
        print(f"fitted {est.history_.n_epochs} epoch(s) in {fit_s:.0f} s on {est.device_}",
              flush=True)
    epochs = est.history_.n_epochs
    epochs_s = epochs_seconds(est)  # the rest of a fit: mostly the interval calibration
    if not args.load:
        print(f"  of which epochs {epochs_s:.0f} s, the rest of the fit {fit_s - epochs_s:.0f} s "
              "(data preparation, interval calibration)", flush=True)
    if args.save:
        est.save(args.save)
    fallback = train[scored].mean().fillna(0.0)
    rows: list[dict[str, Any]] = []

    shares: dict[str, dict[str, float]] = {}

    def score(truth: pd.DataFrame, pred: Any, mask: np.ndarray) -> float:
        return paper_mse_frame(truth, pred[scored], mask, columns=scored)

    def add(task: str, truth: pd.DataFrame, pred: Any, mask: np.ndarray, secs: float,
            **baselines: float) -> None:
        published = (PUBLISHED.get((task, bool(est.poisson_process)))
                     if scored == all_cols else None)  # published: all 41 features
        rows.append({"task": task, "ours": score(truth, pred, mask), "published": published,
                     **baselines, "eval_s": secs})
        if args.per_feature:
            shares[task] = paper_mse_shares(truth, pred[scored], mask, columns=scored).to_dict()

    # 1. interpolation (paper): condition on everything, reconstruct every observed value
    t0 = time.perf_counter()
    pred = est.predict(test)
    add("interpolation", test, pred, test[scored].notna().to_numpy(), time.perf_counter() - t0)

    # 2. extrapolation: first 24 h -> observed values from 24 h on
    t0 = time.perf_counter()
    past = test[test["t"] < CUTOFF_H]
    past = past[past[cols].notna().any(axis=1)]
    # stays with a scored value before the cutoff (the same stays whatever the descriptors are)
    seen = past.loc[past[scored].notna().any(axis=1), "id"].unique()
    past = past[past["id"].isin(seen)]
    future = test[(test["t"] >= CUTOFF_H) & test["id"].isin(seen)]
    future = future.reset_index(drop=True)
    target = future[scored].notna().to_numpy()
    query = future[["id", "t"]]
    forecast = est.extrapolate(past, times=query)
    add("extrapolation", future, forecast, target, time.perf_counter() - t0,
        LOCF=score(future, locf(past, query, columns=scored, fallback=fallback), target),
        mean=score(future, channel_mean(past, query, columns=scored, fallback=fallback), target))

    # 3. held-out interpolation: 50 % of the observed values hidden
    t0 = time.perf_counter()
    cond, hidden = hide_values(test, args.hide_fraction, columns=scored,
                               random_state=args.seed + 1)
    pred = est.predict(cond)
    secs = time.perf_counter() - t0
    last = locf(cond, columns=scored, fallback=fallback)
    linear = linear_interpolation(cond, columns=scored, fallback=fallback)
    add(f"held-out interpolation ({args.hide_fraction:.0%} hidden)", test, pred, hidden, secs,
        LOCF=score(test, last, hidden), linear=score(test, linear, hidden),
        mean=score(test, channel_mean(cond, columns=scored, fallback=fallback), hidden))
    breakdown = (held_out_breakdown(test, cond, hidden, scored, fallback,
                                    {"model": pred, "linear": linear, "LOCF": last})
                 if getattr(args, "breakdown", False) else None)

    return {
        "rows": rows,
        "n_train_stays": int(train["id"].nunique()),
        "n_test_stays": int(test["id"].nunique()),
        "epochs": epochs,
        "fit_s": fit_s,
        "epochs_s": epochs_s,
        "total_s": time.perf_counter() - start,
        "device": str(est.device_),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "args": vars(args),
        "model": {k: est.get_params()[k] for k in MODEL_KEYS},
        "history": est.history_.to_dict(),
        "source": source,
        "per_feature": shares,
        "breakdown": breakdown,
        "static": static,
        "scored_cols": scored,
    }


def held_out_breakdown(test: pd.DataFrame, cond: pd.DataFrame, hidden: np.ndarray,
                       cols: list[str], fallback: pd.Series, preds: dict[str, Any]
                       ) -> dict[str, Any]:
    """Squared errors of the held-out values by gap bucket and position, and by channel.

    ``preds`` (model and baselines, rows of ``test``) gain the stay's mean of each channel
    (``channel_mean``). Pooled MSE per group; the per-channel rows also give each channel's
    share of the difference between the model's and linear interpolation's paper MSE (these
    shares add up to the difference of the task's two figures). ``visible``: the model's pooled
    MSE on the values it conditioned on, which the baselines reproduce exactly; ``cells``: every
    (channel, position, gap) group, for the ``--out`` file.
    """
    from latentode.evaluation import channel_mean, gap_breakdown, paper_mse_shares

    preds = {**preds, "mean": channel_mean(cond, columns=cols, fallback=fallback)}
    kw = dict(columns=cols, bins=list(GAP_EDGES_H))
    sub = gap_breakdown(cond, test, preds, hidden, by=["position"], **kw)  # one bucket: "none"
    by_gap = pd.concat([
        gap_breakdown(cond, test, preds, hidden, by=["position", "gap"], **kw),
        sub.loc[sub["position"] != "none"].assign(gap="all"),
        gap_breakdown(cond, test, preds, hidden, by=[], **kw).assign(position="all", gap="all"),
    ], ignore_index=True)
    by_gap["position"] = by_gap["position"].astype(str)
    by_gap["gap"] = by_gap["gap"].astype(str)
    order = {p: i for i, p in enumerate(["inside", "before", "after", "none", "all"])}
    by_gap = by_gap.sort_values("position", key=lambda s: s.map(order), kind="stable")
    by_chan = gap_breakdown(cond, test, preds, hidden, by=["channel"], **kw)
    by_chan["channel"] = by_chan["channel"].astype(str)
    excess = (paper_mse_shares(test, preds["model"], hidden, columns=cols)
              - paper_mse_shares(test, preds["linear"], hidden, columns=cols))
    by_chan["paper_excess"] = excess.reindex(by_chan["channel"]).to_numpy()
    by_chan = by_chan.sort_values("paper_excess", ascending=False)
    cells = gap_breakdown(cond, test, preds, hidden, **kw)  # channel x position x gap (--out)
    # the values the model conditioned on (linear interpolation reproduces them exactly)
    seen = gap_breakdown(cond, test, {"model": preds["model"]}, cond[cols].notna().to_numpy(),
                         by=[], **kw)
    return {"edges_h": list(GAP_EDGES_H),
            "visible": {"n": int(seen["n"].iloc[0]), "model": float(seen["model"].iloc[0])},
            "by_gap": by_gap[["position", "gap", "n", *preds]].to_dict("records"),
            "by_channel": by_chan.to_dict("records"),
            "cells": cells.astype({k: str for k in ("channel", "position", "gap")})
            .to_dict("records")}


def format_breakdown(bd: dict[str, Any], top: int = BREAKDOWN_TOP) -> str:
    """The breakdown of :func:`held_out_breakdown` as two plain-text tables (MSE x 1e-3)."""
    methods = ["model", "linear", "LOCF", "mean"]

    def fmt(rows: list[dict[str, Any]], keys: list[str]) -> str:
        table = pd.DataFrame(rows)
        table["model / linear"] = (table["model"] / table["linear"]).map(lambda v: f"{v:.2f}")
        for c in [*methods, *(["paper_excess"] if "paper_excess" in table else [])]:
            table[c] = table[c].map(lambda v: f"{v * 1e3:.3f}")
        cols = [*keys, "n", *methods, "model / linear"]
        if "paper_excess" in table:
            table = table.rename(columns={"paper_excess": "share of the gap"})
            cols.append("share of the gap")
        return table[cols].to_string(index=False)

    chans = bd["by_channel"]
    excess = sum(r["paper_excess"] for r in chans)
    return (
        "\nheld-out values by position relative to the channel's visible values and by gap "
        f"to the nearest one (h; edges {', '.join(f'{e:g}' for e in bd['edges_h'])}), pooled "
        "MSE x 1e-3 on the paper's scale (each value counts once):\n"
        + fmt(bd["by_gap"], ["position", "gap"])
        + f"\nthe {bd['visible']['n']} visible values themselves (gap 0, the baselines "
        f"reproduce them): model {bd['visible']['model'] * 1e3:.3f}"
        + "\n\nchannels with the largest share of the model's excess over linear "
        f"interpolation in the paper MSE (x 1e-3; the {len(chans)} channels with a held-out "
        f"value add up to {excess * 1e3:.3f}), pooled MSE x 1e-3:\n"
        + fmt(chans[:top], ["channel"])
    )


def format_table(res: dict[str, Any]) -> str:
    """The results as one plain-text table (MSE x 1e-3)."""
    table = pd.DataFrame(res["rows"]).set_index("task")
    for c in table.columns:
        if c != "eval_s":
            table[c] = table[c].map(lambda v: "-" if v is None or pd.isna(v) else f"{v * 1e3:.3f}")
    table["eval_s"] = table["eval_s"].map(lambda v: f"{v:.0f}")
    a = {**res["args"], **res.get("model", {})}
    split = "" if a["forecast_split"] is None else f", forecast_split {a['forecast_split']}"
    split += f", obs_dropout {a['obs_dropout']}" if a.get("obs_dropout") else ""
    hist = res.get("history") or {}
    split += (f", scoring {a.get('scoring') or 'loss'} (best epoch {hist['best_epoch'] + 1})"
              if hist.get("best_epoch") is not None and a.get("val_fraction") else "")
    split += f", readout {a['readout']}" if a.get("readout", "latent") != "latent" else ""
    split += (f", readout_aux {a['readout_aux']}" if a.get("readout", "latent") != "latent"
              and a.get("readout_aux", 1.0) != 1.0 else "")
    split += (f", readout_reach {a['readout_reach']}" if a.get("readout", "latent") != "latent"
              and a.get("readout_reach", "window") != "window" else "")
    split += (f", forecast_share {a['forecast_share']} in {tuple(a['forecast_range'])}"
              if a.get("forecast_share") else "")
    head = (f"PhysioNet 2012, {res['n_train_stays']} train / {res['n_test_stays']} test stays; "
            f"Latent ODE ({a['encoder']} encoder{', Poisson' if a['poisson_process'] else ''}, "
            f"gradient {a['gradient']}, weighting {a['obs_weighting']}, "
            f"obs_std {a.get('obs_std', 'learned')}"
            f"{split}), {res['epochs']} epoch(s), fit {res['fit_s']:.0f} s, "
            f"total {res['total_s']:.0f} s, device {res['device']} "
            f"({res['torch_threads']} threads).\nMSE x 1e-3 on the paper's scale "
            "(paper_mse); published = Rubanova et al. 2019, Table 3.")
    if a.get("static") or a.get("score_series_only"):
        head += (f"\nDescriptors {', '.join(STATIC)} "
                 f"{'as static covariates' if a.get('static') else 'as channels'}; scored on "
                 f"the {len(res['scored_cols'])} other channels only (published: all 41).")
    text = head + "\n" + table.fillna("-").to_string()
    top = int(a.get("per_feature") or 0)
    for task, share in res.get("per_feature", {}).items():
        largest = pd.Series(share).sort_values(ascending=False).head(top) * 1e3
        text += (f"\n{task}, largest per-feature shares (x 1e-3, they add up to the MSE): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in largest.items()))
    return text


# ------------------------------------------------------------------------------ t-PatchGNN
# The "first 24 h, forecast the next 24 h" protocol of t-PatchGNN (Zhang et al., ICML 2024),
# read from usail-hkust/t-PatchGNN (lib/physionet.py, lib/parse_datasets.py, lib/evaluation.py,
# tPatchGNN/run_models.py, tPatchGNN/scripts/run_all.sh).
TPATCH_HISTORY_H = 24.0  # observed: t < 24 h; forecast: every observed value at t >= 24 h
TPATCH_SEEN = 0.8  # train + validation share of the stays (the rest: test)
TPATCH_TRAIN = 0.75  # share of the seen stays for training (60 / 20 / 20 overall)
#: Table 1 of the paper (PhysioNet column; mean +- sd over 5 seeds), MSE and MAE on the
#: protocol's min-max scale: name -> (MSE, sd, MAE, sd). GraFITi is not in this table.
PUBLISHED_TPATCH = {
    "t-PatchGNN": (4.98e-3, 0.08e-3, 3.72e-2, 0.03e-2),
    "GRU-D": (5.59e-3, 0.09e-3, 4.08e-2, 0.05e-2),
    "Warpformer": (5.94e-3, 0.35e-3, 4.21e-2, 0.12e-2),
    "Latent-ODE": (6.05e-3, 0.57e-3, 4.23e-2, 0.26e-2),
    "mTAND": (6.23e-3, 0.24e-3, 4.51e-2, 0.17e-2),
}
TPATCH_BASELINES = ("LOCF", "linear trend", "stay mean", "training mean")


def load_raw(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], str]:
    """The stays unscaled, at minute resolution, ``-1`` descriptors kept as values.

    t-PatchGNN reads set-a, set-b and set-c (12,000 stays) with ``--quantization 0`` (its
    default: times in hours at the records' minute resolution) and keeps every value of the
    41 parameters, ``-1`` included, as an observation. Returns ``(frame, columns, source)``.
    """
    return _load_stays(args, dict(quantization=None, scaling=None, unknown_as_nan=False),
                       " (set-a + set-b; t-PatchGNN also reads set-c)")


def tpatch_split(
    ids: np.ndarray, subset: int | None = None, seed: int = 42
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t-PatchGNN's split of the stays: ``(train, validation, test)`` ids, 60 / 20 / 20.

    As ``lib/parse_datasets.py``: ``train_test_split(stays, train_size=0.8, random_state=42,
    shuffle=True)`` gives the seen and the test stays, then ``train_test_split(seen,
    train_size=0.75, random_state=42, shuffle=False)`` the training and validation stays.
    Here the stays are the sorted RecordIDs (t-PatchGNN lists them in the order of its files,
    so the same proportions do not give the same stays). ``subset`` first draws that many
    stays at random (``numpy.random.default_rng(seed)``), as :func:`split_stays` does.
    """
    from sklearn.model_selection import train_test_split

    ids = np.sort(np.asarray(ids))
    if subset is not None and subset < len(ids):
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=subset, replace=False))
    seen, test = train_test_split(ids, train_size=TPATCH_SEEN, random_state=seed, shuffle=True)
    train, val = train_test_split(seen, train_size=TPATCH_TRAIN, random_state=seed,
                                  shuffle=False)
    return train, val, test


def tpatch_frames(
    df: pd.DataFrame, cols: list[str], subset: int | None = None, seed: int = 42
) -> dict[str, Any]:
    """Split the stays and scale them as t-PatchGNN does.

    Each parameter is scaled as ``(x - min) / (max - min)`` with the min and max of the
    observed values of the seen (training + validation) stays (``get_data_min_max`` over
    ``seen_data``); test values may fall outside ``[0, 1]``. Where ``max == min`` the divisor
    is 1 (t-PatchGNN adds 1e-8). The caller's frame is not modified.

    Returns
    -------
    dict
        ``train``, ``val``, ``test``: scaled long frames of each part's stays; ``min``,
        ``max``: the statistics (Series indexed by parameter).
    """
    from latentode.datasets import physionet_minmax, scale_physionet

    train_ids, val_ids, test_ids = tpatch_split(df["id"].unique(), subset, seed)
    seen = df[df["id"].isin(np.concatenate([train_ids, val_ids]))]
    lo, hi = physionet_minmax(seen, cols)
    scaled = scale_physionet(df, "minmax", minmax=(lo, hi), features=cols)

    def part(ids: np.ndarray) -> pd.DataFrame:
        return scaled[scaled["id"].isin(ids)].reset_index(drop=True)

    return {"train": part(train_ids), "val": part(val_ids), "test": part(test_ids),
            "min": lo, "max": hi}


def history_and_future(
    test: pd.DataFrame, cols: list[str], history_h: float = TPATCH_HISTORY_H
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """``(history, future, scored)``: the rows before ``history_h``, those from it on (with an
    observed value) and the scored entries of ``future`` (every observed value), as the
    protocol's ``tt < history`` / ``tt >= history`` split."""
    observed = test[cols].notna().any(axis=1)
    history = test[(test["t"] < history_h) & observed].reset_index(drop=True)
    future = test[(test["t"] >= history_h) & observed].reset_index(drop=True)
    return history, future, future[cols].notna().to_numpy()


def protocol_errors(truth: pd.DataFrame, pred: Any, mask: np.ndarray,
                    cols: list[str]) -> dict[str, Any]:
    """t-PatchGNN's MSE and MAE (``lib/evaluation.py``, ``evaluation``).

    Every scored entry of all test stays is pooled per parameter, the squared (absolute)
    errors are averaged per parameter, then over the parameters with a scored entry; no
    averaging per stay. ``pred`` holds predictions for the rows of ``truth``.
    """
    from latentode.evaluation import per_feature_mse

    per_mse = per_feature_mse(truth, pred, mask, columns=cols)  # also checks the entries
    err = np.abs(np.asarray(pd.DataFrame(pred)[cols], dtype=np.float64)
                 - truth[cols].to_numpy(np.float64))
    m = np.asarray(mask, dtype=bool)
    counts = m.sum(axis=0)
    per_mae = np.where(counts > 0, np.where(m, err, 0.0).sum(axis=0) / np.maximum(counts, 1),
                       np.nan)
    return {"mse": float(per_mse.mean()), "mae": float(np.nanmean(per_mae)),
            "n_values": int(m.sum()), "n_params": int((counts > 0).sum()),
            "per_param_mse": per_mse.dropna().to_dict()}


def linear_trend(history: pd.DataFrame, query: pd.DataFrame, cols: list[str],
                 fallback: pd.Series) -> pd.DataFrame:
    """Least-squares line in time through each stay's history of each parameter, extrapolated
    to the query rows; a single time point gives its mean, a stay without the parameter
    ``fallback``. Rows of ``query`` (``id, t``) in order, columns ``cols``."""
    long = history.melt(id_vars=["id", "t"], value_vars=cols, var_name="param").dropna()
    g = long.assign(tt=long["t"] ** 2, tv=long["t"] * long["value"]).groupby(["id", "param"])
    s = g[["t", "value", "tt", "tv"]].sum()
    n = g.size()
    den = n * s["tt"] - s["t"] ** 2
    ok = den > 1e-12 * np.maximum(n * s["tt"], 1.0)  # two or more distinct times
    slope = ((n * s["tv"] - s["t"] * s["value"]) / den.where(ok, 1.0)).where(ok, 0.0)
    icpt = (s["value"] - slope * s["t"]) / n
    out = pd.DataFrame(index=query.index, columns=cols, dtype=np.float64)
    qid, qt = query["id"].to_numpy(), query["t"].to_numpy(np.float64)
    for c in cols:
        a = icpt.xs(c, level="param") if c in icpt.index.get_level_values("param") else None
        if a is None:
            out[c] = float(fallback[c])
            continue
        b = slope.xs(c, level="param")
        ai = a.reindex(qid).to_numpy()
        bi = b.reindex(qid).to_numpy()
        out[c] = np.where(np.isnan(ai), float(fallback[c]), ai + bi * qt)
    return out


def run_tpatchgnn(args: argparse.Namespace) -> dict[str, Any]:
    """Fit on the seen stays, forecast each test stay's values from 24 h on; return results."""
    import torch

    from latentode import LatentODERegressor
    from latentode.evaluation import channel_mean, locf

    bad = [f for f, on in (("--static", args.static), ("--score-series-only",
                                                       args.score_series_only),
                           ("--breakdown", args.breakdown), ("--resume", args.resume)) if on]
    if bad:
        raise SystemExit(f"{', '.join(bad)} do(es) not apply to --protocol tpatchgnn")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    df, cols, source = load_raw(args)
    parts = tpatch_frames(df, cols, args.subset, args.seed)
    seen = pd.concat([parts["train"], parts["val"]], ignore_index=True)
    test = parts["test"]
    print(f"{source}: {df['id'].nunique()} stays loaded; {parts['train']['id'].nunique()} "
          f"train / {parts['val']['id'].nunique()} validation / {test['id'].nunique()} test "
          f"stays ({time.perf_counter() - start:.0f} s)", flush=True)

    if args.load:
        est = LatentODERegressor.load(args.load, device=None if args.device == "auto"
                                      else args.device)
        fit_s = epochs_seconds(est)
        print(f"loaded {args.load} (trained {est.history_.n_epochs} epoch(s) in {fit_s:.0f} s)",
              flush=True)
    else:
        # the protocol's validation stays are 25 % of the seen stays; the estimator draws its
        # own 25 % of them for early stopping and the best weights
        val_fraction = args.val_fraction or (1.0 - TPATCH_TRAIN)
        est = build_estimator(argparse.Namespace(**{**vars(args),
                                                    "val_fraction": val_fraction}))
        # calibration rescales the spread only, never the means scored here: skipped
        est.set_params(patience=args.patience, early_stopping=not args.no_early_stopping,
                       calibrate=False)
        fit_rows = seen[seen.groupby("id")["t"].transform("size") >= 2]
        t0 = time.perf_counter()
        est.fit(fit_rows, time_col="t", id_col="id", target_cols=cols)
        fit_s = time.perf_counter() - t0
        print(f"fitted {est.history_.n_epochs} epoch(s) in {fit_s:.0f} s on {est.device_}",
              flush=True)
    if args.save:
        est.save(args.save)

    history, future, scored = history_and_future(test, cols)
    query = future[["id", "t"]]
    train_mean = seen[cols].mean().fillna(0.0)
    conditioned = future["id"].isin(history["id"].unique()).to_numpy()
    t0 = time.perf_counter()
    mean_forecast = pd.DataFrame(np.tile(train_mean.to_numpy(), (len(future), 1)),
                                 columns=cols)
    forecast = mean_forecast.copy()
    if conditioned.any():  # stays without a value before 24 h get the training mean
        pred = est.extrapolate(history, times=query[conditioned])
        forecast.loc[conditioned, cols] = pred[cols].to_numpy(np.float64)
    eval_s = time.perf_counter() - t0
    preds = {
        "Latent ODE (ours)": forecast,
        "LOCF": locf(history, query, columns=cols, fallback=train_mean),
        "linear trend": linear_trend(history, query, cols, train_mean),
        "stay mean": channel_mean(history, query, columns=cols, fallback=train_mean),
        "training mean": mean_forecast,
    }
    rows = [{"method": name, **protocol_errors(future, p, scored, cols)}
            for name, p in preds.items()]
    return {
        "protocol": "tpatchgnn", "rows": rows, "source": source,
        "n_train_stays": int(parts["train"]["id"].nunique()),
        "n_val_stays": int(parts["val"]["id"].nunique()),
        "n_test_stays": int(test["id"].nunique()),
        "n_forecast_stays": int(future["id"].nunique()),
        "n_no_history": int(future.loc[~conditioned, "id"].nunique()),
        "epochs": est.history_.n_epochs, "best_epoch": est.history_.best_epoch,
        "history": est.history_.to_dict(),
        "fit_s": fit_s, "eval_s": eval_s, "total_s": time.perf_counter() - start,
        "device": str(est.device_), "torch_threads": torch.get_num_threads(),
        "model": {k: est.get_params()[k] for k in MODEL_KEYS},
        "published": {k: list(v) for k, v in PUBLISHED_TPATCH.items()},
        "args": vars(args),
    }


def format_tpatchgnn(res: dict[str, Any]) -> str:
    """The protocol's results beside the published figures (MSE x 1e-3, MAE x 1e-2)."""
    m = res["model"]
    head = (f"PhysioNet 2012, t-PatchGNN protocol (first 24 h -> every value from 24 h on), "
            f"{res['source']}: {res['n_train_stays']} train / {res['n_val_stays']} validation / "
            f"{res['n_test_stays']} test stays ({res['n_forecast_stays']} with values to "
            f"forecast, {res['rows'][0]['n_values']} values of {res['rows'][0]['n_params']} "
            f"parameters). Latent ODE ({m['encoder']} encoder, gradient {m['gradient']}, "
            f"readout {m['readout']}, forecast_split {m['forecast_split']}, weighting "
            f"{m['obs_weighting']}, obs_std {m['obs_std']}, scoring "
            f"{res['args'].get('scoring') or 'loss'}), {res['epochs']} epoch(s) (best "
            f"{'-' if res['best_epoch'] is None else res['best_epoch'] + 1}), "
            f"fit {res['fit_s']:.0f} s, device {res['device']} "
            f"({res['torch_threads']} threads).\nMSE x 1e-3 and MAE x 1e-2 of min-max scaled "
            "values (train + validation statistics), per parameter over all test values, then "
            "over parameters.")
    if res["n_no_history"]:
        head += f" {res['n_no_history']} test stay(s) without history: training mean."
    lines = [f"{'method':<28}{'MSE x1e-3':>14}{'MAE x1e-2':>14}"]
    for r in res["rows"]:
        lines.append(f"{r['method']:<28}{r['mse'] * 1e3:>14.3f}{r['mae'] * 1e2:>14.3f}")
    lines.append("published (Zhang et al. 2024, Table 1; set-a + b + c, mean +- sd of 5 seeds):")
    for name, (mse_, mse_sd, mae_, mae_sd) in res["published"].items():
        lines.append(f"  {name:<26}{mse_ * 1e3:>8.2f} +- {mse_sd * 1e3:.2f}"
                     f"{mae_ * 1e2:>8.2f} +- {mae_sd * 1e2:.2f}")
    text = head + "\n" + "\n".join(lines)
    top = int(res["args"].get("per_feature") or 0)
    if top:
        per = pd.Series(res["rows"][0]["per_param_mse"]).sort_values(ascending=False).head(top)
        text += ("\nLatent ODE, largest per-parameter MSE (x 1e-3): "
                 + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in per.items()))
    return text


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the benchmark, print the table; return the results."""
    from latentode.demo import add_forecast_arguments
    from latentode.nn.model import POSTERIOR_TIMES
    from latentode.nn.registry import ENCODERS, LIKELIHOODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reconstruction",
                        choices=("reconstruction", "classification"),
                        help="interpolation / extrapolation MSE (default) or in-hospital "
                             "mortality (set-a)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="classification: repeat the 80/20 split with this many seeds")
    parser.add_argument("--static", action="store_true",
                        help="Age, Gender, Height, ICUType as static covariates instead of "
                             "channels (reconstruction: the other 37 channels are scored)")
    parser.add_argument("--score-series-only", action="store_true",
                        help="reconstruction: descriptors stay channels but only the other 37 "
                             "channels are hidden and scored (the comparison with --static)")
    parser.add_argument("--unlabelled-set-b", action="store_true",
                        help="classification: add set-b's stays to the training stays without "
                             "their labels (semi_supervised=True; set-b's outcomes never read)")
    parser.add_argument("--classifier", default="latent", choices=("latent", "encoder"))
    parser.add_argument("--ce-weight", type=float, default=100.0)
    parser.add_argument("--class-weight", default="none", choices=("none", "balanced"))
    parser.add_argument("--members", type=int, default=1,
                        help="classification: fit this many classifiers per split in all "
                             f"(random_state seed + {MEMBER_SEED_STEP} m, m = 1, 2, ...: their "
                             "own initialisation, validation stays and batch order) and score "
                             "their averaged probability (ensemble_*) beside the first's "
                             "(auc_*)")
    parser.add_argument("--member-start", type=int, default=0, metavar="M",
                        help="classification: the first fit is member M (random_state seed + "
                             f"{MEMBER_SEED_STEP} M), the --members fits are M, M + 1, ...; "
                             "a later run adds members to a saved one without refitting it")
    parser.add_argument("--save-proba", default=None, metavar="PATH",
                        help="classification: write the test stays' labels and probabilities "
                             "(every member's, the baselines') per split to this CSV, for "
                             "--ensemble-of")
    parser.add_argument("--ensemble-of", nargs="+", default=None, metavar="PATH",
                        help="fit nothing: average the probabilities of --save-proba files "
                             "paired per split and print each input's, the ensemble's and the "
                             "baselines' AUC-ROC and AUC-PR and the paired differences")
    parser.add_argument("--classifier-dropout", type=float, default=0.0,
                        help="classification: dropout of the classifier head in training")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="classification: L2 penalty of the optimiser on every weight")
    parser.add_argument("--weight-averaging", type=float, default=0.0,
                        help="classification: horizon in epochs of the moving average of the "
                             "weights that is validated and kept "
                             "(LatentODEClassifier(weight_averaging=)); 0: none")
    parser.add_argument("--head-inputs", default="latent",
                        choices=("latent", "latent+summary", "latent+wide", "latent+pooled",
                                 "latent+summary+pooled"),
                        help="classification: what the head reads beside the static covariates "
                             "(LatentODEClassifier(head_inputs=)): z_t0, or also per-channel "
                             "summaries of the observed values and / or the encoder's hidden "
                             "states pooled over the stay; default 'latent', the paper's "
                             "head, as in the README's earlier commands (the library's "
                             "default is 'latent+summary')")
    parser.add_argument("--scoring", default=None,
                        choices=sorted(set(CLASSIFIER_SCORINGS + REGRESSOR_SCORINGS)),
                        help="what early stopping and the best weights watch on the "
                             "--val-fraction stays: classification log_loss (default), roc_auc "
                             "or loss (LatentODEClassifier(scoring=...)); reconstruction loss "
                             "(default) or mse (LatentODERegressor(scoring=...))")
    parser.add_argument("--patience", type=int, default=10,
                        help="early-stopping patience in epochs (with --val-fraction)")
    parser.add_argument("--no-early-stopping", action="store_true",
                        help="with --val-fraction: keep the best weights but train all --epochs")
    parser.add_argument("--trace", action="store_true",
                        help="classification: also score the test stays after every epoch and "
                             "replay which epoch each early-stopping rule (val_loss, "
                             "val_log_loss, val_roc_auc; patience 5, 10, 20) would restore")
    parser.add_argument("--data", default=None,
                        help=f"PhysioNet archive or folder (default {DEFAULT_DATA})")
    parser.add_argument("--allow-sample", action="store_true",
                        help="use the bundled 300 stays when the archive is absent")
    parser.add_argument("--subset", type=int, default=None,
                        help="use N randomly chosen stays instead of all 8,000")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--poisson", action="store_true", help="Poisson process likelihood")
    parser.add_argument("--encoder", default="odernn", choices=ENCODERS)
    parser.add_argument("--gradient", default="adjoint", choices=("adjoint", "backprop"))
    parser.add_argument("--solver", default="dopri5", choices=("dopri5", "rk4", "euler"))
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--lr-decay", type=float, default=None,
                        help="learning-rate factor per epoch, floor lr / 10 (the paper's 0.999 "
                             "per batch is about 0.88 per epoch)")
    parser.add_argument("--obs-weighting", default="value", choices=("value", "channel"),
                        help="'channel': every observed channel of a stay weighs the same in the "
                             "likelihood (the paper's per-series, per-feature averaging)")
    parser.add_argument("--obs-dropout", type=float, default=0.0,
                        help="hide this fraction of each training stay's values from the encoder "
                             "while scoring all of them")
    parser.add_argument("--forecast-split", type=float, default=None,
                        help="train for extrapolation: condition on this fraction of each stay's "
                             "window and score the rest (the paper's extrapolation model: 0.5)")
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--linear-term", action="store_true",
                        help="a learned linear term A z in the latent dynamics (linear_term=True)")
    parser.add_argument("--readout", default="latent", choices=("latent", "neighbours"),
                        help="readout of the means: the decoder alone, or corrected by each "
                             "channel's neighbouring observations (readout='neighbours')")
    parser.add_argument("--readout-aux", type=float, default=1.0,
                        help="readout_aux: weight of the decoder's own likelihood beside the "
                             "readout's (0: the readout alone explains the data)")
    parser.add_argument("--readout-reach", default="window", choices=("window", "spacing"),
                        help="readout_reach: where the reach of the readout's correction starts")
    add_forecast_arguments(parser)
    parser.add_argument("--forecast-range", type=float, nargs=2, default=(0.2, 0.8),
                        metavar=("LOW", "HIGH"), help="forecast_range of --forecast-share")
    parser.add_argument("--dynamics-activation", default="tanh",
                        choices=("tanh", "elu", "softplus"),
                        help="dynamics_activation: the hidden non-linearity of the latent field")
    parser.add_argument("--posterior-time", default="first", choices=POSTERIOR_TIMES,
                        help="posterior_time: the latent state the posterior is over, at each "
                             "stay's start or at its last conditioning time")
    parser.add_argument("--likelihood", default="gaussian", choices=LIKELIHOODS,
                        help="likelihood: the observation model of the values (student_t: heavy "
                             "tails, robust to artefacts)")
    parser.add_argument("--input-fences", type=float, default=None, metavar="W",
                        help="input_fences: clamp the values the model conditions on to "
                             "per-channel fences, the 5th / 95th percentiles widened by W times "
                             "their range (default: none)")
    parser.add_argument("--rec-dim", type=int, default=40)
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--n-layers", type=int, default=3)
    parser.add_argument("--gru-units", type=int, default=50)
    parser.add_argument("--mtan-ref-points", type=int, default=64,
                        help="with --encoder mtan: reference times (mTAN's classifier: 128)")
    parser.add_argument("--mtan-embed-dim", type=int, default=None,
                        help="with --encoder mtan: size of the time embedding (default: "
                             "--units; mTAN: 128)")
    parser.add_argument("--kl-warmup", default="exponential",
                        help="'exponential' (the paper's), 'none' or a number of epochs")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="hold out training stays for early stopping (paper: 0)")
    parser.add_argument("--obs-std", default="learned",
                        help="observation noise std in standardised units, or 'learned' (the "
                             "paper fixes 0.01 on its (x - min) / max scale)")
    parser.add_argument("--per-feature", type=int, default=0, metavar="K",
                        help="also print the K features with the largest shares of each MSE")
    parser.add_argument("--hide-fraction", type=float, default=0.5)
    parser.add_argument("--protocol", default="rubanova", choices=("rubanova", "tpatchgnn"),
                        help="reconstruction: the Latent ODE paper's three tasks (default) or "
                             "t-PatchGNN's forecast of every value from 24 h on, given the "
                             "first 24 h (60/20/20 split, min-max scale, MSE and MAE; "
                             "--val-fraction 0 means the protocol's 0.25 of the seen stays)")
    parser.add_argument("--breakdown", action="store_true",
                        help="held-out interpolation: print the squared errors of the model, "
                             "linear interpolation, LOCF and the stay mean by gap to the nearest "
                             "visible value and by channel")
    parser.add_argument("--unknown-as-nan", action="store_true",
                        help="treat -1 descriptors as missing (the paper keeps them)")
    parser.add_argument("--estimator-defaults", action="store_true",
                        help="reconstruction: fit LatentODERegressor() with every parameter at "
                             "the library's default (not this script's, the paper's set-up) "
                             "but max_epochs (--epochs), random_state (--seed), verbose, n_jobs "
                             "(--threads) and device (the flags whose default differs, "
                             "--val-fraction, --kl-warmup, --readout, --point-prediction, take "
                             "the library's); model flags given beside it apply on top; the "
                             "data, split and tasks unchanged")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads on the CPU (0: torch's default)")
    parser.add_argument("--seed", type=int, default=42,
                        help="the model's random_state (its validation stays, initialisation, "
                             "shuffling) and the held-out task's hidden values (seed + 1); the "
                             "--subset draw and the split of --task classification and "
                             "--protocol tpatchgnn; the reconstruction tasks keep the paper's "
                             "--subset draw and train / test split (seed 42) at every seed")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--point-prediction", default=None,
                        choices=("posterior_mean", "predictive_mean"),
                        help="the regressor's point_prediction (default: the estimator's); "
                             "with --load, the rule a saved fit predicts under")
    parser.add_argument("--save", default=None, help="save the fitted estimator here")
    parser.add_argument("--load", default=None,
                        help="evaluate an estimator saved with --save instead of training one")
    parser.add_argument("--resume", default=None,
                        help="continue training an estimator saved with --save for --epochs more "
                             "epochs at --lr (and --lr-decay), KL weight 1; the model options of "
                             "the saved estimator are kept")
    args = parser.parse_args(argv)
    if args.estimator_defaults:
        if args.task != "reconstruction" or args.load or args.resume:
            parser.error("--estimator-defaults builds the regressor of --task reconstruction; "
                         "it goes with neither --task classification, --load nor --resume")
        parser.set_defaults(**library_flag_defaults())  # the flags given still win
        args = parser.parse_args(argv)
        args.flag_defaults = vars(parser.parse_args(["--estimator-defaults"]))
    allowed = CLASSIFIER_SCORINGS if args.task == "classification" else REGRESSOR_SCORINGS
    if args.scoring is not None and args.scoring not in allowed:
        parser.error(f"--scoring {args.scoring} is not an option of --task {args.task} "
                     f"(one of {', '.join(allowed)})")
    args.scoring = args.scoring or allowed[0]
    if args.estimator_defaults:
        args.flag_defaults["scoring"] = allowed[0]

    if args.ensemble_of:
        res = run_ensemble(args)
        print(format_ensemble(res))
    elif args.task == "classification":
        res = run_classification(args)
        print(format_classification(res))
    elif args.protocol == "tpatchgnn":
        res = run_tpatchgnn(args)
        print(format_tpatchgnn(res))
    else:
        res = run(args)
        print(format_table(res))
        if res.get("breakdown"):
            print(format_breakdown(res["breakdown"]))
    if args.out:
        parent = os.path.dirname(args.out)
        if parent:
            os.makedirs(parent, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
