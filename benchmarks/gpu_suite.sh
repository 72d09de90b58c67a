#!/bin/bash
# Every GPU measurement of issue #14 in one run, each step with its own time limit, for a
# session that is lent a GPU for a few minutes:
#
#   bash benchmarks/gpu_suite.sh [DATA] [OUT]
#
# DATA: the PhysioNet 2012 archive or folder (default ../shared/data/physionet2012; a copy of
# set-ab.tar.gz, 13 MB, travels with the working tree where ../shared does not).
# OUT: where the log, the JSON results and the profiler tables go (default out/gpu).
# Steps (environment variables override the limits, in seconds, and the recipe):
#   1. CUDA correctness: the CUDA-against-CPU tests (T_TESTS, 60)
#   2. training speed at batch 50, both gradient modes, with --profile 3 (T_SPEED, 100)
#   3. the large-batch recipe on the full PhysioNet protocol, backprop, BS=500 LR=0.03
#      DECAY=0.987 EPOCHS=100 (T_RECIPE, 360): its figures and its wall time
# Total under 9 minutes on an H200 (about 1.3 s per epoch at batch 500).
set -u
DATA=${1:-../shared/data/physionet2012}
OUT=${2:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=${PY:-python3}
L=$OUT/log.txt
step() { echo "== $1 ($(date +%T))" | tee -a "$L"; }
{ nvidia-smi -L; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } >> "$L" 2>&1
step "CUDA tests"
timeout "${T_TESTS:-60}" $PY -m pytest -q -p no:cacheprovider tests/test_nn_gpu.py tests/test_ode.py \
  tests/test_estimator.py tests/test_io.py -k "cuda or gpu or graphed or CUDA" >> "$L" 2>&1
echo "rc $?" >> "$L"
step "train_speed, batch 50, profile"
timeout "${T_SPEED:-100}" $PY benchmarks/train_speed.py --data "$DATA" --device cuda --n-stays 500 \
  --epochs 2 --profile 3 --profile-out "$OUT/prof.txt" --out "$OUT/train_speed.json" >> "$L" 2>&1
echo "rc $?" >> "$L"
BS=${BS:-500} LR=${LR:-0.03} DECAY=${DECAY:-0.987} EPOCHS=${EPOCHS:-100}
step "large-batch recipe: batch $BS, lr $LR, decay $DECAY, $EPOCHS epochs"
timeout "${T_RECIPE:-360}" $PY benchmarks/physionet.py --data "$DATA" --device cuda \
  --epochs "$EPOCHS" --gradient backprop --obs-weighting channel --obs-std 0.05 --kl-warmup 3 \
  --batch-size "$BS" --lr "$LR" --lr-decay "$DECAY" --threads 1 --verbose 0 \
  --out "$OUT/recipe_bs$BS.json" >> "$L" 2>&1
echo "rc $?" >> "$L"
step "done"
cat "$L"
