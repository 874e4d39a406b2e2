#!/usr/bin/env bash
# `app serve` under a bounded load from loopback (benches/src/serve_load.rs): REQUESTS POSTs of real
# photos from CONCURRENCY clients, with dynamic batching on (--max-batch 16 --max-wait-ms 5) and
# off (--max-batch 1), against `e2e infer --batch 32` (the folded model alone) in the same run;
# ROUNDS alternating rounds, medians. Writes benches/results/<date>-serve.md and the raw .jsonl.
#
#   benches/serve.sh [PHOTO_DIR]    # default: data/sports15/test or ../shared/data/sports15/test
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-400}
CONCURRENCY=${CONCURRENCY:-16}

DATA=${1:-}
for d in "$DATA" data/sports15/test ../shared/data/sports15/test; do
  if [ -n "$d" ] && [ -d "$d" ]; then DATA=$d; break; fi
done
WEIGHTS=${WEIGHTS:-}
for w in "$WEIGHTS" weights/mobilenet_v2_1.0_224 ../shared/weights/mobilenet_v2_1.0_224; do
  if [ -n "$w" ] && [ -d "$w" ]; then WEIGHTS=$w; break; fi
done
[ -d "${DATA:-/nonexistent}" ] && [ -d "${WEIGHTS:-/nonexistent}" ] || {
  echo "need photos and MobileNetV2 1.0 weights with the top: run 'cargo xtask fetch' or pass PHOTO_DIR / WEIGHTS=DIR" >&2; exit 1; }
mapfile -t PHOTOS < <(find "$DATA" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) | sort | head -64)

echo "== building"
cargo build --release -q -p app -p e2e-bench
DATE=$(date +%Y-%m-%d)
OUT=benches/results
mkdir -p "$OUT"
RAW="$OUT/$DATE-serve.jsonl"
: > "$RAW"
tmp=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"' EXIT

load() { # label, server flags...
  local label=$1; shift
  ./target/release/app serve --weights "$WEIGHTS" --addr 127.0.0.1:0 "$@" > "$tmp/out" 2> "$tmp/err" &
  server=$!
  local url=""
  for _ in $(seq 300); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/out" || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$tmp/err" >&2; exit 1; }
  ./target/release/serve-load --url "$url" --requests 32 --concurrency "$CONCURRENCY" "${PHOTOS[@]}" > /dev/null # warm-up
  ./target/release/serve-load --url "$url" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --label "$label" "${PHOTOS[@]}" | tee -a "$RAW"
  kill -TERM "$server"; wait "$server" || true; server=""
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  load batching --max-batch 16 --max-wait-ms 5
  load no-batching --max-batch 1
  ./target/release/e2e infer --batch 32 --seconds 5 --weights "$WEIGHTS" | tee -a "$RAW"
done

python3 - "$RAW" "$REQUESTS" "$CONCURRENCY" > "$OUT/$DATE-serve.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
infer = med([r["images_per_s"] for r in rows if r.get("task") == "infer"])
print(f"# `app serve` under load ({sys.argv[2]} requests, {sys.argv[3]} clients, loopback), medians of {len([r for r in rows if r.get('task') == 'infer'])} rounds\n")
print("| mode | images/s | p50 ms | p99 ms | non-200 | vs `e2e infer` b32 |")
print("|---|---:|---:|---:|---:|---:|")
for label in ("batching", "no-batching"):
    rs = [r for r in rows if r.get("label") == label]
    ips = med([r["images_per_s"] for r in rs])
    bad = sum(r["requests"] - r["ok"] for r in rs)
    print(f"| {label} | {ips:.1f} | {med([r['p50_ms'] for r in rs]):.1f} | {med([r['p99_ms'] for r in rs]):.1f} | {bad} | {ips / infer:.2f}x |")
print(f"| `e2e infer --batch 32` (model only) | {infer:.1f} | | | | 1.00x |")
print("\nTarget (issue 18): batching throughput >= 0.80x of `e2e infer`'s batch-32 images/s.")
PY
cat "$OUT/$DATE-serve.md"
