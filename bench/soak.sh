#!/usr/bin/env bash
# Soak (issue 21): many tenants' jobs submitted, watched, finished, pulled, some cancelled or deleted, and expired by
# retention set to seconds, on a farm of synthetic workers, for LOAD_SECONDS; Redis used_memory and key count, and the
# coordinator's RSS and open file descriptors sampled throughout; then every job expires and the idle farm is sampled
# again. Target: Redis memory after expiry within 10 % of its baseline; coordinator memory without a growth trend.
#   bench/soak.sh
# Environment: LOAD_SECONDS (300), TENANTS (8), WORKERS (4), MS_PER_STEP (2), STEPS (4), IMAGES_PER_JOB (4),
#   SHARD (2), RETENTION_SECONDS (10: a "day"), SAMPLE_SECONDS (5), JOBS_PER_SECOND (unset: each tenant submits its
#   next job when the last is pulled; set: a fixed rate over all tenants), NO_BUILD=1, KEEP=1 (keep logs and samples).
# Prints the sample table and a summary; bench/soak.md has the method and the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh
source bench/lib.sh

export LOAD_SECONDS=${LOAD_SECONDS:-300} STEPS=${STEPS:-4} IMAGES_PER_JOB=${IMAGES_PER_JOB:-4}
export SAMPLE_SECONDS=${SAMPLE_SECONDS:-5} RETENTION_SECONDS=${RETENTION_SECONDS:-10}
TENANTS=${TENANTS:-8}; WORKERS=${WORKERS:-4}; MS_PER_STEP=${MS_PER_STEP:-2}; SHARD=${SHARD:-2}

ensure_redis
bench_run_setup farm-soak
bench_build

redis_port=$(free_port); coord_port=$(free_port); web_port=$(free_port); metrics_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state" --save "" --appendonly no >"$state/redis.log" 2>&1 &
pids+=($!)
wait_for 20 redis-cli -p "$redis_port" ping
days=$(python3 -c "print($RETENTION_SECONDS / 86400)")
coordinator_env=(Farm__Redis="127.0.0.1:$redis_port" Farm__Storage="$state/results" Farm__DefaultModel=bench
  Farm__ShardSize="$SHARD" Farm__Retention__JobDays="$days" Farm__Retention__ResultDays="$days"
  Farm__Retention__FailedInputDays="$days" Farm__Retention__SweepIntervalSeconds=1
  Farm__Limits__SubmitsPerMinutePerTenant=100000 Logging__LogLevel__Default=Warning)
coordinator_metrics=(Farm__Telemetry__PrometheusPort="$metrics_port" Farm__Telemetry__PrometheusHost=127.0.0.1)
keys() { env "${coordinator_env[@]}" dotnet "$(dll Coordinator RenderFarm.Coordinator)" keys create "$@" 2>/dev/null; }
worker_key=$(keys --tenant farm --role worker)
for t in $(seq 1 "$TENANTS"); do echo "tenant-$t $(keys --tenant "tenant-$t" --role client)"; done >"$state/keys.txt"
env "${coordinator_env[@]}" "${coordinator_metrics[@]}" Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" \
  Kestrel__Endpoints__Web__Url="http://127.0.0.1:$web_port" Kestrel__Endpoints__Web__Protocols=Http1 \
  dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$state/coordinator.log" 2>&1 &
pids+=($!); coord_pid=$!
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz"
for i in $(seq 1 "$WORKERS"); do
  Farm__Redis="127.0.0.1:$redis_port" Farm__Coordinator="http://127.0.0.1:$coord_port" Farm__ApiKey="$worker_key" \
    Farm__WorkerId="soak-$i" Farm__Models__bench="synthetic:$MS_PER_STEP" Urls="http://127.0.0.1:0" Logging__LogLevel__Default=Warning \
    dotnet "$(dll Worker RenderFarm.Worker)" >"$state/worker-$i.log" 2>&1 &
  pids+=($!)
done
key=$(awk 'NR==1 { print $2 }' "$state/keys.txt")
deadline=$((SECONDS + 180))
until [ "$(curl -fsS "http://127.0.0.1:$web_port/v1/workers" -H "x-api-key: $key" 2>/dev/null | python3 -c 'import json,sys; print(sum(w.get("state") == "WORKER_STATE_IDLE" for w in json.load(sys.stdin).get("workers", [])))' 2>/dev/null || echo 0)" -ge "$WORKERS" ]; do
  [ $SECONDS -ge $deadline ] && { echo "workers did not all register; see $state" >&2; KEEP=1; exit 1; }
  sleep 0.5
done
# Warm-up: one job per tenant, run and expired, so the baseline is a farm that has run work (scripts loaded, task
# stream and consumer group created, render rates measured, tenants' fair-queue clock set) and holds none.
warm=()
while read -r _ k; do
  warm+=("$k $(curl -fsS "http://127.0.0.1:$web_port/v1/jobs" -H "x-api-key: $k" -H 'content-type: application/json' \
    -d "{\"header\": {\"params\": {\"model\": \"bench\", \"width\": 64, \"height\": 64, \"steps\": $STEPS}, \"seeds\": [1]}, \"prompts\": [{\"prompt\": \"warm-up\"}]}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobId"])')")
done <"$state/keys.txt"
for entry in "${warm[@]}"; do
  read -r k job <<<"$entry"
  deadline=$((SECONDS + 120))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$web_port/v1/jobs/$job" -H "x-api-key: $k")" = 404 ]; do
    [ $SECONDS -ge $deadline ] && { echo "warm-up job $job did not expire" >&2; KEEP=1; exit 1; }
    sleep 0.5
  done
done
echo "==> soak: $TENANTS tenants, $WORKERS workers, ${LOAD_SECONDS}s of load, retention ${RETENTION_SECONDS}s" >&2
python3 bench/soak.py "http://127.0.0.1:$web_port" "$redis_port" "$coord_pid" "$state/keys.txt" "$state/samples.json" \
  "http://127.0.0.1:$metrics_port/metrics"
[ "${KEEP:-}" = 1 ] && cp "$state/samples.json" "${SAMPLES_OUT:-/dev/null}" 2>/dev/null || true
