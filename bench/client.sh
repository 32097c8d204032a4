#!/usr/bin/env bash
# Start-up time of the `farm` CLI (bench/client.md, "Start-up"): cold processes of `farm --help` and `farm status JOB`
# against a private Redis + coordinator (no worker: the job just queues), for each build of the client:
#   native  the NativeAOT binary that scripts/install-farm.sh installs (published here into $work)
#   apphost src/Client/bin/Release/net10.0/farm (JIT; what the README put on the PATH before)
#   dll     dotnet src/Client/bin/Release/net10.0/farm.dll (JIT through the muxer; what scripts use)
# Timed with hyperfine (installed from Debian's packages when missing): 3 warm-up runs, then RUNS runs (default 30).
#   bench/client.sh                 # builds Coordinator and Client (Release) and publishes the native binary first
#   NO_BUILD=1 NATIVE=path/to/farm bench/client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh
source bench/lib.sh
ensure_redis
ensure_commands hyperfine:hyperfine
RUNS=${RUNS:-30}

work=$(mktemp -d /tmp/farm-client-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ "${NO_BUILD:-}" != 1 ]; then
  echo "==> building (Release)" >&2
  for p in Coordinator Client; do dotnet build "src/$p" -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null; done
fi
native=${NATIVE:-}
if [ -z "$native" ]; then
  echo "==> publishing the native farm" >&2
  bash scripts/install-farm.sh --publish-only "$work/native" >/dev/null
  native=$work/native/farm
fi

redis_port=$(free_port); coord_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for 20 redis-cli -p "$redis_port" ping
Farm__Redis="127.0.0.1:$redis_port" Farm__Auth__Mode=Disabled Farm__Storage="$work/results" Farm__DefaultModel=bench \
  Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" Logging__LogLevel__Default=Warning \
  dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$work/coordinator.log" 2>&1 &
pids+=($!)
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz"

export FARM_COORDINATOR="http://127.0.0.1:$coord_port"
printf 'a lighthouse at dusk\na harbour at dawn\n' >"$work/prompts.txt"
job=$("$native" submit "$work/prompts.txt" --model bench --seed 1 | tail -1)
"$native" status "$job" >/dev/null

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M') UTC, $(ls -l "$native" | awk '{ printf "%.1f MiB", $5 / 1048576 }') native binary"
apphost=$root/src/Client/bin/Release/net10.0/farm
dll_cmd="dotnet $root/src/Client/bin/Release/net10.0/farm.dll"
for cmd in "--help" "status $job"; do
  hyperfine -N --warmup 3 --runs "$RUNS" --style basic --export-json "$work/h.json" \
    -n "native $cmd" "$native $cmd" -n "apphost $cmd" "$apphost $cmd" -n "dll $cmd" "$dll_cmd $cmd" >/dev/null 2>&1
  python3 - "$work/h.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
native = results[0]["median"]
for r in results:
    t = sorted(r["times"])
    print(f'{r["command"]:<24} median {r["median"]*1000:7.1f} ms  min {t[0]*1000:7.1f}  p90 {t[int(len(t)*0.9)]*1000:7.1f}  ({r["median"]/native:5.1f}x native)')
EOF
done
