#!/usr/bin/env bash
# Large-batch submit benchmark for the `farm` client (bench/client.md).
# Starts a private Redis and coordinator on free loopback ports (no worker: the job just queues), submits 1,000 and
# then 100,000 prompts, and reports the client's wall time and peak RSS (/usr/bin/time -v), the coordinator's peak
# RSS (VmHWM) and Redis's used memory after each. API keys are switched off (Farm__Auth__Mode=Disabled): this measures
# the submit path, not authentication. Everything it starts or writes is removed on exit.
#
#   bench/submit-100k.sh            # builds RenderFarm.sln -c Release first unless SKIP_BUILD=1
#   SIZES="1000 10000 100000" bench/submit-100k.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000 100000"}
work=$(mktemp -d /tmp/farm-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  dotnet build RenderFarm.sln -c Release -v q -nologo >/dev/null
fi
farm_dll=src/Client/bin/Release/net10.0/farm.dll
coordinator_dll=src/Coordinator/bin/Release/net10.0/RenderFarm.Coordinator.dll

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
grpc_port=$(free_port)
url=http://127.0.0.1:$grpc_port

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

Farm__Redis=127.0.0.1:$redis_port Farm__Storage=$work/storage Farm__DefaultModel=bench \
Kestrel__Endpoints__Grpc__Url=$url Kestrel__Endpoints__Grpc__Protocols=Http2 \
Farm__Auth__Mode=Disabled Logging__LogLevel__Default=Warning \
  dotnet "$coordinator_dll" >"$work/coordinator.log" 2>&1 &
coordinator_pid=$!
pids+=($coordinator_pid)
for _ in $(seq 100); do dotnet "$farm_dll" jobs --coordinator "$url" >/dev/null 2>&1 && break; sleep 0.2; done
dotnet "$farm_dll" jobs --coordinator "$url" >/dev/null || { echo "coordinator did not start:" >&2; tail -20 "$work/coordinator.log" >&2; exit 1; }

redis_used() { redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
vm_hwm_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$coordinator_pid/status"; }

printf '%-9s %-10s %-12s %-16s %-16s %-18s %s\n' prompts images client_s client_rss_MiB coord_hwm_MiB redis_delta_MiB job
coord_before=$(vm_hwm_kb)
echo "coordinator idle: VmHWM $((coord_before / 1024)) MiB; redis used $(( $(redis_used) / 1048576 )) MiB" >&2
for n in $SIZES; do
  prompts=$work/prompts-$n.txt
  # Varied, realistic-length prompts (~80 characters).
  awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "a watercolor painting of a lighthouse number %d at dusk, dramatic sky, high detail\n", i }' >"$prompts"
  before=$(redis_used)
  /usr/bin/time -v -o "$work/time-$n" dotnet "$farm_dll" submit "$prompts" --seed 1 --steps 20 --coordinator "$url" \
    >"$work/out-$n" 2>"$work/err-$n" || { cat "$work/err-$n" >&2; exit 1; }
  after=$(redis_used)
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time-$n" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time-$n")
  images=$(sed -n 's/^submitted job [^:]*: \([0-9]*\) images.*/\1/p' "$work/err-$n")
  mib() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.1f", v / d }'; }
  printf '%-9s %-10s %-12s %-16s %-16s %-18s %s\n' "$n" "$images" "$wall" "$(mib "$rss" 1024)" "$(mib "$(vm_hwm_kb)" 1024)" \
    "$(mib $((after - before)) 1048576)" "$(tail -1 "$work/out-$n")"
done
echo "coordinator VmHWM is its peak since start (cumulative over the rows above)" >&2
