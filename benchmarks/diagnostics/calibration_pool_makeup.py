# ruff: noqa: E402, E501, B023, E731
# A diagnosis script of #15 (docs/results/calibration.md, "The remaining misses"), kept for reproduction; run from the repository
# root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1.
"""How many validation series of the calibration suite's prefix-augmented fits have a relative
(the other copy of the same series) among the training series, per data set and seed."""
import argparse
import sys
from pathlib import Path

argparse.ArgumentParser(description=__doc__.replace("\n", " ")).parse_args()

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibration as cb

from latentode.data import split_series
from latentode.utils import draw_seed

for name, seed in [("osc-sparse", 3), ("oscillators", 1), ("osc-fast", 3)] + [
    (n, s)
    for n in ("oscillators", "osc-fast", "osc-sparse", "ou", "walk", "periodic", "physionet")
    for s in (0, 1, 2, 3)
]:
    case = cb.SUITE[name]
    df = cb.make_case(case, seed)
    is_test = cb._test_split(df, 0.25, seed)
    train = cb._with_prefixes(df[~is_test], 1, case.time_range, seed + 3)
    ids = np.sort(train["id"].unique())
    first = int(df[~is_test]["id"].max()) + 1
    assert set(train["id"]) <= set(df["id"]) | {i + first for i in df["id"]}
    sd = np.random.SeedSequence(draw_seed(seed)).generate_state(3)
    tr, va = split_series(len(ids), 0.1, np.random.default_rng(sd[0]))
    orig_of = lambda i: i if i < first else None
    trs = set(ids[tr].tolist())
    vas = ids[va]
    # relatives: copy id = orig + first (one copy round, ids offset by next_id = first)
    rel = lambda i: i + first if i < first else i - first
    leaked = sum(rel(int(i)) in trs for i in vas)
    print(
        name,
        seed,
        "val",
        len(vas),
        "copies",
        int((vas >= first).sum()),
        "relative in training",
        leaked,
    )
