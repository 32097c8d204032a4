#!/usr/bin/env bash
# `farm pull` of one finished job: every byte streamed through the coordinator over one stream (--parallel 1, the
# serial pull) or PARALLEL streams, and (S3 store) presigned URLs fetched by the client, PARALLEL at a time.
#   bench/pull.sh
# Environment: STORE (s3: s3rver, the S3 test server of tests/Farm.Tests/Storage; fs: the coordinator's directory),
#   IMAGES (2000), SIZE (64: images are SIZExSIZE synthetic PNGs), PARALLEL (8), RUNS (3), WORKERS (4), SHARD (16),
#   NO_BUILD=1, BASELINE_DLL (optional: another build's farm.dll, timed as a plain `pull` too).
#   KEEP=1 keeps the run folder (logs).
# Redis, s3rver, the coordinator and synthetic workers (synthetic:0, no ONNX) run on free loopback ports and are
# removed on exit. Each run pulls into an empty folder; the modes alternate order, and every folder must end with the
# same files and manifest.jsonl. Prints one row per pull; bench/client.md has the method and figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

STORE=${STORE:-s3}; IMAGES=${IMAGES:-2000}; SIZE=${SIZE:-64}; PARALLEL=${PARALLEL:-8}; RUNS=${RUNS:-3}; WORKERS=${WORKERS:-4}; SHARD=${SHARD:-16}

ensure_redis
s3rver="$root/tests/Farm.Tests/Storage/s3server"
if [ "$STORE" = s3 ] && [ ! -f "$s3rver/node_modules/s3rver/bin/s3rver.js" ]; then
  echo "==> installing s3rver (npm ci)" >&2
  (cd "$s3rver" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
source "$root/bench/lib.sh"
bench_run_setup farm-pull
bench_build

redis_port=$(free_port); s3_port=$(free_port); coord_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state" --save "" --appendonly no >"$state/redis.log" 2>&1 &
pids+=($!)
wait_for 20 redis-cli -p "$redis_port" ping
if [ "$STORE" = s3 ]; then
  mkdir -p "$state/s3"
  node "$s3rver/node_modules/s3rver/bin/s3rver.js" -d "$state/s3" -a 127.0.0.1 -p "$s3_port" --silent --no-vhost-buckets >"$state/s3rver.log" 2>&1 &
  pids+=($!); s3_pid=$!
  wait_for 30 curl -sf "http://127.0.0.1:$s3_port/"
  curl -sf -X PUT "http://127.0.0.1:$s3_port/bench" >/dev/null   # s3rver does not check signatures
  storage=(Farm__Storage="s3://bench/results" Farm__S3__Endpoint="http://127.0.0.1:$s3_port" Farm__S3__Region=us-east-1
    Farm__S3__AccessKey=S3RVER Farm__S3__SecretKey=S3RVER Farm__S3__UsePathStyle=true Farm__S3__ConditionalWrites=false)
else
  s3_pid=$$   # no store process: its CPU column reads this shell's
  storage=(Farm__Storage="$state/results")
fi

env "${storage[@]}" Farm__Redis="127.0.0.1:$redis_port" Farm__Auth__Mode=Disabled Farm__DefaultModel=bench Farm__ShardSize="$SHARD" \
  Farm__MaxImagesPerJob=1000000 Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" Logging__LogLevel__Default=Warning \
  dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$state/coordinator.log" 2>&1 &
pids+=($!); coord_pid=$!
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz"
for i in $(seq 1 "$WORKERS"); do
  Farm__Redis="127.0.0.1:$redis_port" Farm__Coordinator="http://127.0.0.1:$coord_port" Farm__WorkerId="bench-$i" \
    Farm__Models__bench="synthetic:0" Urls="http://127.0.0.1:0" Logging__LogLevel__Default=Warning \
    dotnet "$(dll Worker RenderFarm.Worker)" >"$state/worker-$i.log" 2>&1 &
  pids+=($!)
done

echo "==> rendering $IMAGES synthetic ${SIZE}x${SIZE} images into the $STORE store" >&2
seq 1 "$IMAGES" | sed 's/^/bench prompt /' >"$state/prompts.txt"
job=$(farm submit "$state/prompts.txt" --model bench --size "${SIZE}x${SIZE}" --steps 1 --seed 1 2>/dev/null | tail -1)
deadline=$((SECONDS + 600))
until farm status "$job" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s.get("finished") else 1)'; do
  [ $SECONDS -ge $deadline ] && { echo "job $job did not finish in time" >&2; exit 1; }
  sleep 0.5
done

# pull_once LABEL FOLDER ARGS… → one row: wall (process start included), the pull's own seconds from --json, and
# the CPU seconds s3rver and the coordinator spent meanwhile
pull_once() {
  local label=$1 dir=$2; shift 2
  local t0 t1 s0 s1 c0 c1
  s0=$(cpu_seconds "$s3_pid"); c0=$(cpu_seconds "$coord_pid"); t0=$(date +%s.%N)
  "$@" >"$state/out.json" 2>"$state/err.txt" || { cat "$state/err.txt" >&2; exit 1; }
  t1=$(date +%s.%N); s1=$(cpu_seconds "$s3_pid"); c1=$(cpu_seconds "$coord_pid")
  python3 - "$label" "$t0" "$t1" "$state/out.json" "$dir" "$IMAGES" "$s0" "$s1" "$c0" "$c1" <<'EOF'
import json, os, sys
label, t0, t1, out, folder, images, s0, s1, c0, c1 = sys.argv[1:]
text = open(out).read().strip().splitlines()
s = json.loads(text[-1]) if text and text[-1].startswith("{") else {}
n = len([f for f in os.listdir(folder) if f.endswith(".png")])
assert n == int(images), f"{label}: {n} files of {images}"
pulled = s.get("seconds")
print(f"{label:<38} {float(t1) - float(t0):>7.2f} {pulled if pulled is not None else '-':>8} {s.get('via_urls', '-'):>9}"
      f" {float(s1) - float(s0):>12.2f} {float(c1) - float(c0):>12.2f}")
EOF
}

digest() { (cd "$1" && sha256sum -- *.png manifest.jsonl | sha256sum | cut -c1-16); }

echo "job $job: $IMAGES images, ${SIZE}x${SIZE}, store $STORE"
printf '%-38s %7s %8s %9s %12s %12s\n' mode wall_s pull_s via_urls s3rver_cpu_s coord_cpu_s
echo "pull_s: the client's own timer (from --json: after GetJob and the folder check, to the last file); wall_s adds process start"
for run in $(seq 1 "$RUNS"); do
  modes=(stream-1 stream-n); [ "$STORE" = s3 ] && modes+=(urls-n)
  [ $((run % 2)) -eq 0 ] && modes=($(printf '%s\n' "${modes[@]}" | tac))
  for mode in "${modes[@]}"; do
    dir="$state/pull-$mode-$run"
    case $mode in
      stream-1) pull_once "stream via coordinator, --parallel 1" "$dir" farm pull "$job" --out "$dir" --via-coordinator --parallel 1 --json ;;
      stream-n) pull_once "stream via coordinator, --parallel $PARALLEL" "$dir" farm pull "$job" --out "$dir" --via-coordinator --parallel "$PARALLEL" --json ;;
      urls-n)   pull_once "presigned URLs, --parallel $PARALLEL" "$dir" farm pull "$job" --out "$dir" --parallel "$PARALLEL" --json ;;
    esac
  done
  if [ -n "${BASELINE_DLL:-}" ]; then
    dir="$state/pull-baseline-$run"
    pull_once "baseline build, plain pull" "$dir" \
      dotnet "$BASELINE_DLL" --coordinator "http://127.0.0.1:$coord_port" pull "$job" --out "$dir" --json
  fi
done
digests=$(for d in "$state"/pull-*; do digest "$d"; done | sort -u)
[ "$(echo "$digests" | wc -l)" -eq 1 ] || { echo "folders differ: $digests" >&2; exit 1; }
echo "every folder: identical files and manifest.jsonl (digest $digests)"
