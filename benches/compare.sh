#!/usr/bin/env bash
# Side-by-side benchmark: this project against TensorFlow/Keras and PyTorch on the same machine,
# alternating, same batch and input size; writes benches/results/<date>.md.
#
#   benches/compare.sh                 # inference b32/b1, training A/B/C (about 15 minutes)
#   benches/compare.sh --quick         # shorter measurements, one round
#   benches/compare.sh --e2e           # also the end-to-end --preset study-finetune wall time (+ ~25 minutes)
#   benches/compare.sh --inference     # inference only: this fp32 and int8 against every runtime (~10 minutes)
#
# Peers run in benches/.venv (created here with tensorflow-cpu, torch, torchvision, onnxruntime,
# openvino, nncf, tf2onnx; random weights). Inference is also measured against ONNX Runtime and
# OpenVINO (fp32 and int8, calibrated on 100 photos of $DATA/train) and LiteRT (XNNPACK); this
# project's int8 is `e2e infer --int8` calibrated on the same photos. They are measured only,
# never a dependency of the product.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3} SECONDS_EACH=${SECONDS_EACH:-10} E2E=0 SPECS=("infer 32" "infer 1" "train-a 32" "train-b 32" "train-c 32")
for a in "$@"; do
  case "$a" in
    --quick) ROUNDS=1 SECONDS_EACH=4 ;;
    --e2e) E2E=1 ;;
    --inference) SPECS=("infer 32" "infer 1") ;;
    *) echo "unknown option $a (use --quick, --e2e, --inference)" >&2; exit 2 ;;
  esac
done

WEIGHTS=${WEIGHTS:-}
for w in "$WEIGHTS" weights/mobilenet_v2_1.0_224 weights/mobilenet_v2_1.0_224_no_top ../shared/weights/mobilenet_v2_1.0_224; do
  if [ -n "$w" ] && [ -d "$w" ]; then WEIGHTS=$w; break; fi
done
if [ ! -d "${WEIGHTS:-/nonexistent}" ]; then
  echo "no MobileNetV2 1.0/224 weights: run 'cargo xtask fetch' (or set WEIGHTS=DIR)" >&2; exit 1
fi
DATA=${DATA:-}
for d in "$DATA" data/sports15 ../shared/data/sports15; do
  if [ -n "$d" ] && [ -d "$d" ]; then DATA=$d; break; fi
done

VENV=benches/.venv
have_peers() { # one process per module: TensorFlow and torch in one process abort (both register LLVM options)
  for m in tensorflow torch torchvision scipy PIL onnxruntime openvino nncf tf2onnx sympy; do
    "$VENV/bin/python" -c "import $m" 2>/dev/null || return 1
  done
}
if ! have_peers; then
  echo "== creating $VENV (tensorflow-cpu, torch, torchvision, scipy, pillow, onnxruntime, openvino, nncf, tf2onnx)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q tensorflow-cpu torch torchvision scipy pillow onnxruntime openvino nncf tf2onnx onnx sympy
fi
PY="$VENV/bin/python"

echo "== building"
cargo build --release -q -p e2e-bench -p app

DATE=$(date +%Y-%m-%d)
OUT=benches/results
mkdir -p "$OUT"
RAW="$OUT/$DATE.jsonl"
: > "$RAW"

CALIB="$DATA/train"
run() { # peer task batch
  local peer=$1 task=$2 batch=$3 common=(--batch "$3" --seconds "$SECONDS_EACH")
  case "$peer" in
    this) ./target/release/e2e "$task" "${common[@]}" --weights "$WEIGHTS" ;;
    this-int8) ./target/release/e2e infer --int8 --calib "$CALIB" "${common[@]}" --weights "$WEIGHTS" ;;
    onnxruntime*|openvino*|litert)
      "$PY" benches/peers/runtime_peer.py "$peer" --calib "$CALIB" "${common[@]}" 2>/dev/null | tail -1 ;;
    tensorflow) TF_CPP_MIN_LOG_LEVEL=3 "$PY" benches/peers/tf_peer.py "$task" "${common[@]}" 2>/dev/null | tail -1 ;;
    pytorch) "$PY" benches/peers/torch_peer.py "$task" "${common[@]}" 2>/dev/null | tail -1 ;;
  esac
}

for spec in "${SPECS[@]}"; do
  read -r task batch <<< "$spec"
  peers=(this tensorflow pytorch)
  if [ "$task" = infer ]; then
    [ -d "$CALIB" ] || { echo "no photos to calibrate int8 on ($CALIB): run 'cargo xtask fetch' or set DATA" >&2; exit 1; }
    peers+=(this-int8 onnxruntime onnxruntime-int8 openvino openvino-int8 litert)
  fi
  for round in $(seq "$ROUNDS"); do
    for peer in "${peers[@]}"; do
      line=$(run "$peer" "$task" "$batch")
      echo "$line" | tee -a "$RAW"
    done
  done
done

if [ "$E2E" = 1 ]; then
  [ -d "${DATA:-/nonexistent}" ] || { echo "no data for --e2e: run 'cargo xtask fetch'" >&2; exit 1; }
  for peer in this tensorflow pytorch; do
    start=$(date +%s%N)
    if [ "$peer" = this ]; then
      # Keep our run's report (per-epoch figures, test accuracy) next to the results.
      ./target/release/app train --preset study-finetune --data "$DATA" --weights "$WEIGHTS" \
        --out "$(mktemp -d)" > "$OUT/$DATE-study-finetune.log" 2>&1
    elif [ "$peer" = tensorflow ]; then
      TF_CPP_MIN_LOG_LEVEL=3 "$PY" benches/peers/tf_study.py --data "$DATA" > /dev/null 2>&1
    else
      "$PY" benches/peers/torch_study.py --data "$DATA" > /dev/null 2>&1
    fi
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "{\"peer\":\"$peer\",\"task\":\"study-finetune\",\"batch\":32,\"size\":224,\"wall_ms\":$ms}" | tee -a "$RAW"
  done
fi

./target/release/e2e infer --batch 32 --seconds 3 --weights "$WEIGHTS" --profile "$OUT/$DATE-profile.md" > /dev/null
"$PY" benches/summarize.py "$RAW" "$OUT/$DATE-profile.md" > "$OUT/$DATE.md"
echo "== wrote $OUT/$DATE.md"
cat "$OUT/$DATE.md"
