#!/usr/bin/env bash
# Runs on a borrowed GPU machine, in a copy of this repository that carries `lsic gpu pack`'s
# .gpu/a or .gpu/b (see shared/codec/networks/gpu_recipe.py). Results go to $OUT.
#   deploy/gpu/run.sh bench            lsic bench decode on the GPU (needs .gpu/a), JSON to $OUT
#   deploy/gpu/run.sh drain            lsic bench drain: a real decode worker (GPU synthesis, tile
#                                      processes) empties a backlog of 960 Kodak frames (needs .gpu/a)
#   deploy/gpu/run.sh probe            training samples/s at batch 128 and 256 (24 s each), and 256
#                                      with --compile (60 s, compilation included)
#   deploy/gpu/run.sh train MINUTES    train from .gpu/b/init for MINUTES (its last 1.5 at a lower
#                                      learning rate), split checkpoint and log to $OUT; BATCH (128:
#                                      the H200 ran 2,750 samples/s there, 1,600 at 64), CROP and
#                                      TRAIN_ARGS (e.g. --compile) override the defaults
# The machine has torch, onnxruntime, grpcio, opencv, numpy; the wheels in .gpu add the rest.
set -uo pipefail
ROOT=$(pwd)
OUT=${OUT:-/tmp/lsic-out}
KEEP=/tmp/lsic-gpu  # outlives one call while the machine stays warm
mkdir -p "$OUT" "$KEEP/data"
export PYTHONUNBUFFERED=1

wheels=$(ls -d .gpu/*/wheels 2>/dev/null | head -1)
[ -n "$wheels" ] || { echo "no .gpu/*/wheels: run lsic gpu pack and carry .gpu/a or .gpu/b" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$KEEP/site" "$wheels"/*.whl \
  || exit 3
# The import root `lsic` is shared/ with edge/, cloud/ and proto/lsic/v1 inside, as pyproject.toml maps it.
mkdir -p "$KEEP/root"
ln -sfn "$ROOT/shared" "$KEEP/root/lsic"
ln -sfn "$ROOT/edge" shared/edge
ln -sfn "$ROOT/cloud" shared/cloud
ln -sfn "$ROOT/proto/lsic/v1" shared/v1
export PYTHONPATH="$KEEP/root:$KEEP/site"
lsic() { python3 -m lsic.codec.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

for part in .gpu/a .gpu/b; do  # what this call carries joins what an earlier call left
  [ -d "$part/data" ] && cp -n "$part"/data/* "$KEEP/data/"
done
echo "training images here: $(ls "$KEEP/data" | wc -l)"

case "${1:-}" in
  bench)
    LSIC_MODELS="$ROOT/.gpu/a/models" lsic bench decode --streams .gpu/a/streams --seconds 2 --out "$OUT/decode.json"
    ;;
  drain)
    LSIC_MODELS="$ROOT/.gpu/a/models" lsic bench drain --streams .gpu/a/streams/kodak --frames 960 \
      --batch-frames 32 --processes 0,auto --decode-device cuda --out "$OUT/drain.json"
    ;;
  probe)  # training samples/s at batch 128 and 256, then 256 compiled, from a new network (nothing kept)
    for setting in "128 0.4" "256 0.4" "256 1 --compile"; do
      read -r batch minutes compile <<< "$setting"
      rm -rf "$KEEP/probe"
      lsic train --data "$KEEP/data" --out "$KEEP/probe" --device cuda --bf16 --qat --context checkerboard \
        --batch-size "$batch" --crop 256 --max-minutes "$minutes" --log-every 100 --threads 8 $compile >/dev/null 2>&1
      echo "batch $batch $compile: $(grep -o '"samples_per_s": [0-9.]*' "$KEEP/probe/log.jsonl" | tail -n 3 | tr '\n' ' ')"
      cp "$KEEP/probe/log.jsonl" "$OUT/probe-$batch${compile:+-compiled}.jsonl"
    done
    ;;
  train)
    minutes=${2:-7}
    run=$KEEP/run
    if [ ! -f "$run/checkpoint.pt" ]; then
      mkdir -p "$run"
      python3 -c "
import sys, torch
from lsic.codec.networks.gpu_recipe import load_split
torch.save(load_split(__import__('pathlib').Path('.gpu/b/init')), sys.argv[1])" "$run/checkpoint.pt" || exit 4
    fi
    : > "$run/log.jsonl"
    lsic train --data "$KEEP/data" --out "$run" --eval-data .gpu/b/eval --device cuda --bf16 \
      --batch-size "${BATCH:-128}" --crop "${CROP:-256}" --lr 1e-4 --final-lr 1.5e-5 --final-minutes 1.5 \
      --max-minutes "$minutes" --eval-every 5000 --log-every 500 --checkpoint-minutes 2 --threads 8 \
      ${TRAIN_ARGS:-} 2>&1 | grep -v '^\s*$' | tail -n 40
    python3 -c "
import sys, torch
from pathlib import Path
from lsic.codec.networks.gpu_recipe import save_split
save_split(torch.load(sys.argv[1], map_location='cpu', weights_only=False), Path(sys.argv[2]))" \
      "$run/checkpoint.pt" "$OUT" || exit 5
    cp "$run/log.jsonl" "$OUT/log.jsonl"
    grep -E '"eval"|steps_per_s' "$OUT/log.jsonl" | tail -n 6
    ;;
  *)
    echo "usage: deploy/gpu/run.sh bench | drain | probe | train MINUTES" >&2
    exit 2
    ;;
esac
