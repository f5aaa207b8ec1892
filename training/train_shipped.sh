#!/usr/bin/env bash
# Train the shipped networks in one prepared run on one GPU machine (all its cores for the data).
#
#   bash training/train_shipped.sh DATA_DIR OUT [GAMES19] [MIN_SL19] [MIN_V19] [MIN_SL9] [MIN_V9]
#
# DATA_DIR holds pro19.tar.xz and pro9.tar.xz (../shared/data); OUT receives policy19.pt, value19.pt,
# policy9.pt, value9.pt, eval19.json, eval9.json and runs.tgz (metrics and dataset summaries).
# Each stage has a time limit, so a slow stage cannot eat the ones after it. The value nets start from the
# policy nets' trunks (--init-from): from outcomes alone a value net learns next to nothing
# (docs/journal/2026-11-27-value19-expert-outcomes.md).
set -u
DATA=$1; OUT=$2; G19=${3:-40000}; M_SL19=${4:-3.0}; M_V19=${5:-1.0}; M_SL9=${6:-0.5}; M_V9=${7:-0.25}
W=$(nproc)
START=$(date +%s)
log() { echo "### [+$(( $(date +%s) - START ))s] $*"; }
T="python -m training.cli"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
python -c "from gogame.sgf import load; from training.data import shards; shards.encode_game(load('tests/data/pro19-00.sgf')[0], 'alphago49')"
log "numba kernels compiled, $W cores"
timeout 200 $T dataset "$DATA/pro19.tar.xz" /tmp/ds19 --features alphago49 --workers "$W" --games-per-chunk 200 --max-games "$G19" 2>&1 | tr '\r' '\n' | grep -v "^dataset: "
timeout 200 $T dataset "$DATA/pro19.tar.xz" /tmp/value19 --features alphago49 --positions-per-game 8 --require-result \
    --decided-on-board --no-handicap --min-komi 5.5 --max-komi 7.5 --since 1974 --workers "$W" --games-per-chunk 500 2>&1 | tr '\r' '\n' | grep -v "^dataset: "
timeout 60 $T dataset "$DATA/pro9.tar.xz" /tmp/ds9 --size 9 --features alphago49 --workers "$W" --games-per-chunk 16 --val 0.05 --test 0.05 2>&1 | tr '\r' '\n' | grep -v "^dataset: "
log "datasets built"
(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -l 2 > /tmp/util.txt 2>/dev/null &)
timeout 330 $T sl /tmp/ds19 --out /tmp/sl19 --preset medium --minutes "$M_SL19" --batch-size 512 --optimizer adamw --lr 2e-3 \
    --weight-decay 1e-4 --warmup-steps 200 --val-every 1000 --val-batches 40 --ckpt-every 1000 --amp --export "$OUT/policy19.pt" --no-progress 2>&1 | tail -2
pkill -f "nvidia-smi --query-gpu=utilization"
python -c "
v = [float(x) for x in open('/tmp/util.txt') if x.strip()]
print('GPU utilisation during sl19: mean %.0f%% over %d samples' % (sum(v) / max(len(v), 1), len(v)))"
log "sl19 done"
timeout 150 $T value-sl /tmp/value19 --out /tmp/v19 --init-from "$OUT/policy19.pt" --minutes "$M_V19" --batch-size 256 --optimizer adamw --lr 1e-3 \
    --weight-decay 1e-4 --warmup-steps 50 --val-every 200 --ckpt-every 500 --amp --cache --export "$OUT/value19.pt" --no-progress 2>&1 | tail -2
log "value19 done"
timeout 80 $T sl /tmp/ds9 --out /tmp/sl9 --preset small --minutes "$M_SL9" --batch-size 256 --optimizer adamw --lr 2e-3 \
    --weight-decay 3e-4 --warmup-steps 100 --val-every 200 --ckpt-every 1000 --amp --export "$OUT/policy9.pt" --no-progress 2>&1 | tail -2
timeout 50 $T value-sl /tmp/ds9 --out /tmp/v9 --init-from "$OUT/policy9.pt" --minutes "$M_V9" --batch-size 64 --optimizer adamw --lr 1e-3 \
    --weight-decay 1e-3 --warmup-steps 20 --val-every 50 --ckpt-every 500 --amp --cache --export "$OUT/value9.pt" --no-progress 2>&1 | tail -2
log "9x9 done"
timeout 60 $T eval-policy "$OUT/policy19.pt" "$DATA/pro19.tar.xz" --split test --max-games 4000 --json 2>&1 | tail -1 | tee "$OUT/eval19.json"
timeout 30 $T eval-policy "$OUT/policy9.pt" "$DATA/pro9.tar.xz" --split test --val 0.05 --test 0.05 --json 2>&1 | tail -1 | tee "$OUT/eval9.json"
tar czf "$OUT/runs.tgz" -C /tmp sl19/metrics.csv v19/metrics.csv sl9/metrics.csv v9/metrics.csv \
    ds19/summary.json value19/summary.json ds9/summary.json 2>/dev/null
log "all done"
