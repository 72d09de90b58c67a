# A figure of the messy-data audit (docs/results/messy-data.md), kept for reproduction; run from
# the repository root with the library importable (PYTHONPATH=.) and OMP_NUM_THREADS=1.
"""Held-out MSE (z-scored) of small oscillators, as they are and x 1e-170, beside baselines."""

import argparse
import sys
import warnings
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                    help="data, hiding and estimator seeds, one fit per seed and scale "
                    "(default: 0 1)")
parser.add_argument("--epochs", type=int, default=20, help="max_epochs of each fit (default 20)")
args = parser.parse_args()

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conftest import oscillator_frame  # noqa: E402

from latentode import LatentODERegressor  # noqa: E402
from latentode.evaluation import channel_mean, hide_values, linear_interpolation, locf, mse  # noqa: E402

warnings.simplefilter("ignore")
cols = ["x", "v"]
for seed in args.seeds:
    df0 = oscillator_frame(24, 20, seed=seed)
    for factor in (1.0, 1e-170):
        df = df0.assign(x=df0.x * factor, v=df0.v * factor)
        cond, hidden = hide_values(df, 0.2, columns=cols, random_state=seed)
        mean, std = cond[cols].mean(), df0[cols].std() * factor  # pandas' std underflows at 1e-170
        est = LatentODERegressor(max_epochs=args.epochs, random_state=seed, verbose=0).fit(cond)
        row = {"seed": seed, "factor": factor}
        for name, guess in [("latent_ode", est.predict(cond)),
                            ("linear", linear_interpolation(cond, columns=cols, fallback=mean)),
                            ("locf", locf(cond, columns=cols, fallback=mean)),
                            ("mean", channel_mean(cond, columns=cols, fallback=mean))]:
            try:
                row[name] = round(mse(df, guess, hidden, columns=cols, loc=mean, scale=std), 4)
            except ValueError as e:  # a non-finite prediction (before the fix: inf)
                row[name] = str(e)[:40]
        print(row, flush=True)
