# ruff: noqa: E401, E402, E501, E702, E731, I001
# A diagnosis script of #15 (docs/results/across-datasets.md, "(b) The two-process float32 difference"), kept for
# reproduction; run from the repository root with PYTHONPATH=. and OMP_NUM_THREADS=1:
#     python benchmarks/diagnostics/ddp_split_readout.py single OUTDIR --variant V
#     CUDA_VISIBLE_DEVICES= python -m torch.distributed.run --standalone --nproc_per_node=2 \
#         benchmarks/diagnostics/ddp_split_readout.py ddp OUTDIR --variant V
# (the environment variables VARIANT and EPOCHS of the first version still set the defaults of --variant / --epochs)
"""tests/_ddp_worker.py's estimator fit (--epochs, default 3) with the forecast candidate's four values, in one
process or two (DDP); writes each rank's (or the single process's) weights, losses and readout gradient magnitudes
to OUTDIR/<VARIANT>_rank<r>.json / _single.json."""
import argparse, functools, json, os, sys
from pathlib import Path
parser = argparse.ArgumentParser(description=__doc__.replace("\n", " "))
parser.add_argument("mode", choices=("single", "ddp"), help="one process, or a rank of torch.distributed.run")
parser.add_argument("outdir", type=Path, help="where the JSON files go (created)")
parser.add_argument("--variant", default=os.environ.get("VARIANT"), required="VARIANT" not in os.environ,
                    help='def32 (the defaults) or cand32 (the forecast candidate) plus any of "64" (float64), "adam" '
                    '(Adam for Adamax), "offset" (readout_split="offset") and "pert" (every initial weight scaled by '
                    '1 + 2**-23), e.g. cand32adam (default: $VARIANT)')
parser.add_argument("--epochs", type=int, default=int(os.environ.get("EPOCHS", 3)),
                    help="max_epochs of the fit (default: $EPOCHS, else 3)")
args = parser.parse_args()
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import torch
import _ddp_worker as w
import latentode.estimator as E
import latentode.data as D
from latentode import LatentODERegressor
from latentode.training import distributed as dist_utils

var = args.variant
CAND = dict(forecast_share=0.25, readout_sides="split", forecast_noise=True, forecast_mode="add")
params = {**w.EST_PARAMS, "verbose": 0, "max_epochs": args.epochs, **({} if var.startswith("def") else CAND)}
if "64" in var:
    torch.set_default_dtype(torch.float64)
    orig = D.iterate_batches
    def it(*a, **k):
        k.setdefault("dtype", torch.float64)
        return orig(*a, **k)
    D.iterate_batches = it
if "offset" in var:
    import latentode.nn.model as M
    _init = M.LatentODE.__init__
    def init(self, *a, **k):
        k["readout_split"] = "offset"
        _init(self, *a, **k)
    M.LatentODE.__init__ = init
if "adam" in var:
    E.fit_model = functools.partial(E.fit_model, optimizer="adam")

grads = []
gradlog = {}
class Rec:
    def on_train_begin(self, model):
        if "pert" in var:
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + 2.0 ** -23)
        for n, p in model.named_parameters():
            if n.startswith("readout."):
                p.register_hook(lambda g, n=n: gradlog.setdefault(n, []).append(g.detach().abs().clone()) or None)
    def on_epoch_end(self, epoch, record, model):
        return None
    def on_train_end(self, history, model):
        pass

def run():
    est = LatentODERegressor(**params, callbacks=[Rec()]).fit(w.frame())
    ws = {n: p.detach().double().reshape(-1).tolist() for n, p in est.model_.named_parameters()}
    return {"weights": ws, "train_loss": est.history_["train_loss"],
            "val_loss": est.history_["val_loss"],

            "gmax": {n: torch.stack(v).amax(0).double().reshape(-1).tolist() for n, v in gradlog.items()},
            "gmed": {n: torch.stack(v).median(0).values.double().reshape(-1).tolist() for n, v in gradlog.items()},
            "ctx_shape": list(est.model_.readout.context.weight.shape)}

mode, out = args.mode, args.outdir; out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
if mode == "ddp":
    assert dist_utils.init_from_env(None)
    r = dist_utils.get_rank()
    res = run()
    (out / f"{var}_rank{r}.json").write_text(json.dumps(res))
    torch.distributed.destroy_process_group()
else:
    (out / f"{var}_single.json").write_text(json.dumps(run()))
