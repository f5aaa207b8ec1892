#!/usr/bin/env bash
# The 9x9 self-play value net on one GPU: the value stage of issue 8 at a size a CPU cannot train.
#
#   bash training/train_value9_gpu.sh DATA OUT [MINUTES] [PRESET] [BATCH]
#
# DATA is either a number of games, which the value stage first plays on all of this machine's cores with the
# shipped policies (gogame/weights/policy9.pt to move U-1, one random move, policy9-rl.pt to the end), or a
# .tar.xz of one folder of value data made by `gogame-train value` elsewhere (the SGF files are not needed;
# xz shrinks the bit-packed shards about fivefold: 176,500 games, 21.7 MB):
#
#   tar cJf runs/value9-data.tar.xz -C PARENT --exclude sgf value-data
#
# OUT receives value9.pt, eval.json (held-out MSE overall and by stage) and metrics.csv. The training stops
# after MINUTES (default 6) with the cosine schedule run to its end; best.pt is chosen by held-out MSE; the
# net has the ownership head (the shards carry each game's final area).
set -eu
DATA=$1; OUT=$2; MINUTES=${3:-6}; PRESET=${4:-medium}; BATCH=${5:-256}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
T="python -m training.cli"
TRAINING=(--out "$WORK/run" --preset "$PRESET" --minutes "$MINUTES" --batch-size "$BATCH" --optimizer adamw
          --lr 5e-4 --weight-decay 1e-3 --warmup-steps 200 --val-every 500 --ckpt-every 2000 --ownership-weight 1.5
          --amp --cache --export "$OUT/value9.pt" --no-progress)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
if [[ $DATA =~ ^[0-9]+$ ]]; then
    FOLDER=$WORK/value-data
    $T value "$FOLDER" --rl gogame/weights/policy9-rl.pt --sl gogame/weights/policy9.pt --games "$DATA" \
        --games-per-shard 500 --workers "$(nproc)" "${TRAINING[@]}" 2>&1 | tail -3
else
    tar xJf "$DATA" -C "$WORK"
    FOLDER=$(dirname "$(find "$WORK" -name meta.json | head -1)")
    $T value-sl "$FOLDER" "${TRAINING[@]}" 2>&1 | tail -2
fi
$T eval-value "$OUT/value9.pt" "$FOLDER" --split val --json > "$OUT/eval.json"
cp "$WORK/run/metrics.csv" "$OUT/"
python -c "import json; r = json.load(open('$OUT/eval.json'))
print('held-out MSE', round(r['mse'], 4), 'AlphaGo scale', round(r['mse_alphago_scale'], 4))"
