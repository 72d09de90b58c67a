# A figure of docs/results/messy-data.md (the series scorer), kept for reproduction; run from the
# repository root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1.
"""Cross-validated classification scores per series with make_series_scorer, beside baselines.

make_oscillator_classes (two frequencies, 2 x N series), StratifiedGroupKFold(4) over series;
per fold an encoder LatentODEClassifier trained for --epochs and for one epoch, scored by
``make_series_scorer(name)`` for four scikit-learn scorer names, beside two baselines on the same
folds and series: the prior (scikit-learn's DummyClassifier(strategy="prior")) and a logistic
regression on each series' channel means and standard deviations. Also checks that the scorer
equals the metric computed by hand from ``predict_proba`` / ``predict`` on every fold.
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from sklearn import metrics as m
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latentode import LatentODEClassifier
from latentode.datasets import make_oscillator_classes
from latentode.evaluation import make_series_scorer

NAMES = ("roc_auc", "accuracy", "balanced_accuracy", "neg_log_loss")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--per-class", type=int, nargs="+", default=[8, 25],
                    help="series per class, one data set each (default: 8 25)")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                    help="data and estimator seeds (default: 0 1)")
args = parser.parse_args()
warnings.simplefilter("ignore")

small = dict(latent_dim=4, rec_dim=12, units=24, n_layers=1, gru_units=16, encoder="gru",
             classifier="encoder", gradient="backprop", batch_size=20, verbose=0,
             early_stopping=False, device="cpu")


def summaries(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c not in ("id", "t")]
    g = df.groupby("id", sort=False)[cols]
    return pd.concat([g.mean().add_suffix("_mean"), g.std().add_suffix("_std")], axis=1).fillna(0)


def by_hand(name: str, clf: LatentODEClassifier, te: pd.DataFrame, y: pd.Series) -> float:
    """The metric on predict_proba / predict of the series of te and their labels."""
    proba = clf.predict_proba(te)
    truth = y.loc[proba.index]
    if name == "roc_auc":
        return m.roc_auc_score(truth, proba[1])
    if name == "neg_log_loss":
        return -m.log_loss(truth, proba.to_numpy(), labels=clf.classes_)
    metric = m.accuracy_score if name == "accuracy" else m.balanced_accuracy_score
    return metric(truth, clf.predict(te))


print("| series | seed | scorer | LatentODE, --epochs | LatentODE, 1 epoch | prior | "
      "logistic on means, sds | max |scorer - by hand| |")
print("|---|---|---|---|---|---|---|---|")
for n in args.per_class:
    for seed in args.seeds:
        df, y = make_oscillator_classes(n, omegas=(1.0, 2.5), random_state=seed)
        per_row = df["id"].map(y)
        folds = list(StratifiedGroupKFold(4, shuffle=True, random_state=seed)
                     .split(df, per_row, groups=df["id"]))
        table = {name: {k: [] for k in ("trained", "one", "prior", "logistic", "diff")}
                 for name in NAMES}
        for train, test in folds:
            tr, te = df.iloc[train], df.iloc[test]
            fits = {k: LatentODEClassifier(**small, max_epochs=e, random_state=seed)
                    .fit(tr, per_row.iloc[train]) for k, e in (("trained", args.epochs),
                                                               ("one", 1))}
            s_tr, s_te = summaries(tr), summaries(te)
            y_tr, y_te = y.loc[s_tr.index], y.loc[s_te.index]
            base = {"prior": DummyClassifier(strategy="prior"),
                    "logistic": make_pipeline(StandardScaler(), LogisticRegression())}
            for name in NAMES:
                scorer = make_series_scorer(name)
                for k, clf in fits.items():
                    table[name][k].append(scorer(clf, te, per_row.iloc[test]))
                for k, model in base.items():
                    table[name][k].append(get_scorer(name)(clone(model).fit(s_tr, y_tr),
                                                           s_te, y_te))
                hand = by_hand(name, fits["trained"], te, y)
                table[name]["diff"].append(abs(table[name]["trained"][-1] - hand))
        for name in NAMES:
            row = table[name]
            cells = " | ".join(f"{np.mean(row[k]):.3f}" for k in ("trained", "one", "prior",
                                                                   "logistic"))
            print(f"| {2 * n} | {seed} | {name} | {cells} | {max(row['diff']):.1e} |",
                  flush=True)
