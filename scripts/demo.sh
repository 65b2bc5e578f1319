#!/usr/bin/env bash
# The main job end to end on built-in defaults, on a fresh machine:
#   install the engines (PyPI wheels), build, generate a labelled dataset and recorded profiles,
#   train a small GoogLeNet (input 64, grayscale), then replay the profiles through the daemon and
#   print its summary. Everything lands in .work/demo (safe to delete).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --workspace
out=.work/demo
rm -rf "$out/state"
mkdir -p "$out"
[ -d "$out/profiles" ] || target/debug/swipebot demo-data --out "$out" --per-class "${DEMO_PER_CLASS:-120}" --profiles "${DEMO_PROFILES:-40}"
# The default recipe (AdamW at its default rate, warm-up and cosine, early stopping); batch 16 for a
# set of 240 photos. It is at 1.0 validation accuracy from the second epoch and stops early.
target/debug/train --data "$out/dataset" --out "$out/model.onnx" --input-size 64 --grayscale \
  --epochs "${DEMO_EPOCHS:-12}" --batch-size 16
target/debug/swipebot replay "$out/profiles" --model "$out/model.onnx" --state-dir "$out/state"
echo "journal: $out/state/decisions.jsonl"
