#!/usr/bin/env bash
# The dashboard under load, measured in Debian's chromium (bench/DashboardBench): the Jobs page with 1,000 jobs and a
# job's page with 1,000 images, first paint and update latency while a worker on the tiny model renders them.
#   bench/dashboard.sh            (JOBS=1000 IMAGES=1000 LOADS=5 UPDATE_SECONDS=30; NO_BUILD=1 skips the builds)
# Redis and a coordinator (auth off, dashboard on a Web endpoint) are started here; the bench starts the worker.
# bench/dashboard.md has the method and the figures measured on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh
source bench/lib.sh
ensure_redis
ensure_commands chromium:chromium

bench_build
[ "${NO_BUILD:-}" = 1 ] || dotnet build bench/DashboardBench -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
[ "${NO_BUILD:-}" = 1 ] || dotnet build src/ModelBuilder -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null

bench_run_setup dashboard-bench

dotnet "$(dll ModelBuilder RenderFarm.ModelBuilder)" create tiny --out "$state/tiny" >/dev/null
redis_port=$(free_port); coord_port=$(free_port); web_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state" --save "" --appendonly no >"$state/redis.log" 2>&1 &
pids+=($!)
wait_for 20 redis-cli -p "$redis_port" ping
Farm__Redis="127.0.0.1:$redis_port" Farm__Auth__Mode=Disabled Farm__Storage="$state/results" Farm__DefaultModel=tiny \
  Farm__Limits__MaxActiveJobsPerTenant=100000 Farm__Limits__SubmitsPerMinutePerTenant=1000000 \
  Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" Kestrel__Endpoints__Web__Url="http://127.0.0.1:$web_port" \
  Logging__LogLevel__Default=Warning dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$state/coordinator.log" 2>&1 &
pids+=($!)
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz"

dotnet "$root/bench/DashboardBench/bin/Release/net10.0/DashboardBench.dll" --grpc "http://127.0.0.1:$coord_port" \
  --web "http://127.0.0.1:$web_port" --redis "127.0.0.1:$redis_port" --worker-dll "$(dll Worker RenderFarm.Worker)" \
  --model-dir "$state/tiny" --jobs "${JOBS:-1000}" --images "${IMAGES:-1000}" --loads "${LOADS:-5}" --update-seconds "${UPDATE_SECONDS:-30}"
