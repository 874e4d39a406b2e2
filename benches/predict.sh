#!/usr/bin/env bash
# `app predict` on a whole folder of photos, end to end, side by side with TensorFlow/Keras and
# ONNX Runtime (benches/peers/predict_peer.py), alternating, medians of ROUNDS; writes
# benches/results/<date>-predict.md and the raw .jsonl beside it.
#
#   benches/predict.sh [DATA_DIR]     # default: data/sports15/train or ../shared/data/sports15/train
#
# Ours is timed as the user runs it: the whole `app predict --weights ... --format csv --output F DIR`
# command (model loading included). The peers are timed inside their process from the first file
# read to the last top-1 (imports, model building and the ONNX export not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}

DATA=${1:-}
for d in "$DATA" data/sports15/train ../shared/data/sports15/train; do
  if [ -n "$d" ] && [ -d "$d" ]; then DATA=$d; break; fi
done
WEIGHTS=${WEIGHTS:-}
for w in "$WEIGHTS" weights/mobilenet_v2_1.0_224 ../shared/weights/mobilenet_v2_1.0_224; do
  if [ -n "$w" ] && [ -d "$w" ]; then WEIGHTS=$w; break; fi
done
[ -d "${DATA:-/nonexistent}" ] && [ -d "${WEIGHTS:-/nonexistent}" ] || {
  echo "need photos and MobileNetV2 1.0 weights with the top: run 'cargo xtask fetch' or pass DATA_DIR / WEIGHTS=DIR" >&2; exit 1; }

VENV=benches/.venv
for m in tensorflow onnxruntime tf2onnx PIL; do
  if ! "$VENV/bin/python" -c "import $m" 2>/dev/null; then
    echo "== installing the peers into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q tensorflow-cpu onnxruntime tf2onnx pillow
    break
  fi
done
PY="$VENV/bin/python"

echo "== building"
cargo build --release -q -p app
DATE=$(date +%Y-%m-%d)
OUT=benches/results
mkdir -p "$OUT"
RAW="$OUT/$DATE-predict.jsonl"
: > "$RAW"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ours() {
  local start end n peak
  start=$(date +%s%N)
  ./target/release/app predict --weights "$WEIGHTS" --format csv --output "$tmp/ours.csv" --quiet "$DATA" 2> "$tmp/err" || true
  end=$(date +%s%N)
  n=$(($(wc -l < "$tmp/ours.csv") - 1))
  peak=$(grep -o 'peak memory [0-9]*' "$tmp/err" | grep -o '[0-9]*$' || echo 0)
  awk -v n="$n" -v ns="$((end - start))" -v peak="$peak" 'BEGIN {
    s = ns / 1e9; printf "{\"peer\": \"this\", \"task\": \"predict-folder\", \"images\": %d, \"seconds\": %.3f, \"images_per_s\": %.2f, \"peak_rss_mib\": %d}\n", n, s, n / s, peak }'
}

"$PY" benches/peers/predict_peer.py --runtime onnxruntime --data "$DATA" > /dev/null 2>&1 # exports the ONNX model once
for round in $(seq "$ROUNDS"); do
  ours | tee -a "$RAW"
  for rt in keras onnxruntime; do
    "$PY" benches/peers/predict_peer.py --runtime "$rt" --data "$DATA" 2>/dev/null | tail -1 | tee -a "$RAW"
  done
done

"$PY" - "$RAW" "$DATA" "$ROUNDS" > "$OUT/$DATE-predict.md" <<'PYEOF'
import json, statistics, sys
raw, data, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(raw) if l.strip()]
med = {}
for p in ["this", "keras", "onnxruntime"]:
    r = [x for x in rows if x["peer"] == p]
    med[p] = {k: statistics.median(x[k] for x in r) for k in ["images_per_s", "seconds", "peak_rss_mib"]}
    med[p]["images"] = r[0]["images"]
ours = med["this"]["images_per_s"]
print(f"# `app predict` on a folder, end to end ({data}, {med['this']['images']} photos)\n")
print(f"Medians of {rounds} alternating rounds, 2 threads each, MobileNetV2 1.0 at 224 with the ImageNet top, batch 32, top-1.\n")
print("| runtime | images | seconds | images/s | peak memory MiB | ours vs it |")
print("|---|---:|---:|---:|---:|---:|")
names = {"this": "this project (`app predict`, whole command)", "keras": "TensorFlow/Keras `predict_on_batch` + PIL", "onnxruntime": "ONNX Runtime (tf2onnx, opset 17) + PIL"}
for p in ["this", "keras", "onnxruntime"]:
    m = med[p]
    print(f"| {names[p]} | {m['images']} | {m['seconds']:.1f} | {m['images_per_s']:.1f} | {m['peak_rss_mib']:.0f} | {ours / m['images_per_s']:.2f}x |")
PYEOF
cat "$OUT/$DATE-predict.md"
