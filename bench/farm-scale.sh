#!/usr/bin/env bash
# Farm scale benchmark with synthetic workers (no ONNX: each step is a fixed sleep, each image a tiny PNG), so what is
# measured is the farm's own overhead: queueing, gRPC reporting, result storage, Redis bookkeeping.
#   bench/farm-scale.sh [WORKER_COUNTS...]        (default: 1 4 16 32)
# Environment: MS_PER_STEP (10), STEPS (20), SHARD (4), TARGET_SECONDS (10: ideal job length per run),
#   PROGRESS_WORKERS (8), PROGRESS_STEPS (50), PROGRESS_RATE (0 = as fast as the coordinator takes reports; else
#   reports/s per worker), PROGRESS_SECONDS (10), PROGRESS_WARMUP (3), SKIP_THROUGHPUT=1, SKIP_PROGRESS=1.
# Throughput: every worker is a separate `dotnet RenderFarm.Worker.dll` process. Progress: bench/ProgressBench's fake
# workers on the real worker protocol. Redis and the coordinator are restarted per run.
# Prints one table row per run; bench/farm-scale.md has the method and the figures measured on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

MS_PER_STEP=${MS_PER_STEP:-10}; STEPS=${STEPS:-20}; SHARD=${SHARD:-4}; TARGET_SECONDS=${TARGET_SECONDS:-10}
PROGRESS_WORKERS=${PROGRESS_WORKERS:-8}; PROGRESS_STEPS=${PROGRESS_STEPS:-50}; PROGRESS_RATE=${PROGRESS_RATE:-0}
PROGRESS_SECONDS=${PROGRESS_SECONDS:-10}; PROGRESS_WARMUP=${PROGRESS_WARMUP:-3}
counts=("$@"); [ ${#counts[@]} -eq 0 ] && counts=(1 4 16 32)

ensure_redis
state=$(mktemp -d /tmp/farm-scale.XXXXXX)
pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done; pids=(); }
cleanup() { local code=$?; stop_all; rm -rf "$state"; exit $code; }
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$root/bench/lib.sh"
bench_build
rss_mib() { local total=0; for pid in "$@"; do total=$((total + $(awk '/VmRSS/ { print $2 }' "/proc/$pid/status"))); done; echo $((total / 1024)); }

# start_farm WORKERS MS_PER_STEP PROGRESS_INTERVAL_MS
start_farm() {
  local workers=$1 ms=$2 interval=$3
  rm -rf "$state/run"; mkdir -p "$state/run"
  redis_port=$(free_port); coord_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state/run" --save "" --appendonly no >"$state/run/redis.log" 2>&1 &
  pids+=($!); redis_pid=$!
  wait_for 20 redis-cli -p "$redis_port" ping
  Farm__Redis="127.0.0.1:$redis_port" Farm__Auth__Mode=Disabled Farm__Storage="$state/run/results" Farm__DefaultModel=bench \
    Farm__ShardSize="$SHARD" Farm__ProgressIntervalMilliseconds="$interval" Farm__MaxImagesPerJob=1000000 \
    Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" Logging__LogLevel__Default=Warning \
    dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$state/run/coordinator.log" 2>&1 &
  pids+=($!); coord_pid=$!
  wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz"
  worker_pids=()
  for i in $(seq 1 "$workers"); do
    Farm__Redis="127.0.0.1:$redis_port" Farm__Coordinator="http://127.0.0.1:$coord_port" Farm__WorkerId="bench-$i" \
      Farm__Models__bench="synthetic:$ms" Urls="http://127.0.0.1:0" Logging__LogLevel__Default=Warning \
      dotnet "$(dll Worker RenderFarm.Worker)" >"$state/run/worker-$i.log" 2>&1 &
    pids+=($!); worker_pids+=($!)
  done
  [ "$workers" -gt 0 ] || return 0
  local deadline=$((SECONDS + 180))
  until [ "$(farm workers --json 2>/dev/null | python3 -c 'import json,sys; print(sum(w["state"] == "idle" for w in json.load(sys.stdin)))' 2>/dev/null || echo 0)" -ge "$workers" ]; do
    [ $SECONDS -ge $deadline ] && { echo "workers did not all register; see $state/run" >&2; exit 1; }
    sleep 0.5
  done
}

# run_job IMAGES STEPS → sets job, wall_s (created → finished, the job's own timestamps, ms), done_n, failed_n
run_job() {
  local images=$1 steps=$2
  seq 1 "$images" | sed 's/^/bench prompt /' >"$state/run/prompts.txt"
  job=$(farm submit "$state/run/prompts.txt" --model bench --size 64x64 --steps "$steps" --seed 1 2>/dev/null | tail -1)
  local deadline=$((SECONDS + 600))
  while :; do
    farm status "$job" --json >"$state/run/status.json"
    if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("finished") else 1)' "$state/run/status.json"; then break; fi
    [ $SECONDS -ge $deadline ] && { echo "job $job did not finish in time" >&2; exit 1; }
    sleep 0.25
  done
  read -r wall_s done_n failed_n < <(python3 -c '
import json,sys
from datetime import datetime
s=json.load(open(sys.argv[1]))
t=lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
print(round(t(s["finished"]) - t(s["created"]), 3), s["images_done"], s["images_failed"])' "$state/run/status.json")
}

if [ "${SKIP_THROUGHPUT:-}" != 1 ]; then
  shard_s=$(python3 -c "print($STEPS * $MS_PER_STEP / 1000)")
  echo "throughput: synthetic:$MS_PER_STEP, $STEPS steps, shard $SHARD → one shard takes $shard_s s ideally"
  printf '%-8s %8s %8s %9s %9s %7s %12s %11s %10s %9s\n' workers images wall_s img_per_s ideal ratio overhead_ms coord_cpu_s worker_mib coord_mib
  for n in "${counts[@]}"; do
    start_farm "$n" "$MS_PER_STEP" 100
    images=$(python3 -c "import math; print($n * $SHARD * max(4, math.ceil($TARGET_SECONDS / $shard_s)))")
    cpu0=$(cpu_seconds "$coord_pid")
    run_job "$images" "$STEPS"
    cpu1=$(cpu_seconds "$coord_pid")
    [ "$done_n" -eq "$images" ] || { echo "only $done_n of $images images done ($failed_n failed)" >&2; exit 1; }
    python3 - "$n" "$images" "$wall_s" "$shard_s" "$SHARD" "$cpu0" "$cpu1" "$(rss_mib "${worker_pids[@]}")" "$(rss_mib "$coord_pid")" <<'EOF'
import sys
n, images, wall, shard_s, shard, cpu0, cpu1, wmib, cmib = sys.argv[1:]
n, images, wall, shard_s, shard = int(n), int(images), float(wall), float(shard_s), int(shard)
rate = images / wall
ideal = n * shard / shard_s
# Per-image overhead: worker-time spent per image beyond the ideal compute time per image (shard_s / shard).
overhead_ms = (n * wall / images - shard_s / shard) * 1000
print(f"{n:<8} {images:>8} {wall:>8.2f} {rate:>9.1f} {ideal:>9.1f} {rate/ideal:>7.3f} {overhead_ms:>12.2f} {float(cpu1)-float(cpu0):>11.2f} {wmib:>10} {cmib:>9}")
EOF
    stop_all
  done
fi

if [ "${SKIP_PROGRESS:-}" != 1 ]; then
  # Capacity, not a farm's worth of synthetic workers: bench/ProgressBench's fake workers speak the worker protocol
  # from pre-built messages, so the coordinator, not the offered load, is what runs out (see bench/farm-scale.md).
  [ "${NO_BUILD:-}" = 1 ] || dotnet build bench/ProgressBench -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
  echo
  echo "progress: $PROGRESS_WORKERS fake workers, $PROGRESS_STEPS steps per shard, ${PROGRESS_SECONDS} s window after ${PROGRESS_WARMUP} s warm-up"
  # interval:watchers — every step written without and with a watcher, then the default coalescing with a watcher.
  for run in 0:0 0:1 100:1; do
    interval=${run%%:*} watchers=${run#*:}
    start_farm 0 1 "$interval"
    dotnet "$root/bench/ProgressBench/bin/Release/net10.0/ProgressBench.dll" --coordinator "http://127.0.0.1:$coord_port" \
      --redis "127.0.0.1:$redis_port" --coordinator-pid "$coord_pid" --redis-pid "$redis_pid" --label "interval=${interval}ms" \
      --workers "$PROGRESS_WORKERS" --steps "$PROGRESS_STEPS" --watchers "$watchers" --rate "$PROGRESS_RATE" \
      --warmup "$PROGRESS_WARMUP" --seconds "$PROGRESS_SECONDS"
    stop_all
  done
fi
