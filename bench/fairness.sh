#!/usr/bin/env bash
# Fairness between tenants (issue 21): tenant A submits a big job, tenant B a small one a second later, on a farm of
# synthetic workers (no ONNX: a step is a fixed sleep). Measures, from the jobs' own event timestamps, how long B waits
# for its first shard to start and how long B takes in all, against the farm's shard time and A's job.
#   bench/fairness.sh
# Environment: A_IMAGES (10000), B_IMAGES (10), WORKERS (4), MS_PER_STEP (100), STEPS (10), SHARD (32: images per
#   shard, and the workers' Farm:MaxBatch; a synthetic batch takes the same time whatever its size), B_DELAY (1 s),
#   PULL_AHEAD_MS (the workers' Farm:PullAheadMilliseconds; unset: their default; 0: claim a whole render ahead),
#   NO_BUILD=1 (reuse the Release binaries), KEEP=1 (keep the run's folder: logs, events JSON).
# Prints one table row; bench/fairness.md has the method and the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh
source bench/lib.sh

A_IMAGES=${A_IMAGES:-10000}; B_IMAGES=${B_IMAGES:-10}; WORKERS=${WORKERS:-4}; MS_PER_STEP=${MS_PER_STEP:-100}; STEPS=${STEPS:-10}
SHARD=${SHARD:-32}; B_DELAY=${B_DELAY:-1}; pull_ahead=()
[ -n "${PULL_AHEAD_MS:-}" ] && pull_ahead=(Farm__PullAheadMilliseconds="$PULL_AHEAD_MS")

ensure_redis
bench_run_setup farm-fairness
bench_build

redis_port=$(free_port); coord_port=$(free_port); web_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state" --save "" --appendonly no >"$state/redis.log" 2>&1 &
pids+=($!)
wait_for 20 redis-cli -p "$redis_port" ping
coordinator_env=(Farm__Redis="127.0.0.1:$redis_port" Farm__Storage="$state/results" Farm__DefaultModel=bench
  Farm__ShardSize="$SHARD" Farm__MaxImagesPerJob=1000000 Logging__LogLevel__Default=Warning)
keys() { env "${coordinator_env[@]}" dotnet "$(dll Coordinator RenderFarm.Coordinator)" keys create "$@" 2>/dev/null; }
worker_key=$(keys --tenant farm --role worker)
key_a=$(keys --tenant tenant-a --role client)
key_b=$(keys --tenant tenant-b --role client)
env "${coordinator_env[@]}" Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" \
  Kestrel__Endpoints__Web__Url="http://127.0.0.1:$web_port" Kestrel__Endpoints__Web__Protocols=Http1 \
  dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$state/coordinator.log" 2>&1 &
pids+=($!)
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz"
for i in $(seq 1 "$WORKERS"); do
  env "${pull_ahead[@]}" Farm__Redis="127.0.0.1:$redis_port" Farm__Coordinator="http://127.0.0.1:$coord_port" Farm__ApiKey="$worker_key" \
    Farm__WorkerId="fair-$i" Farm__MaxBatch="$SHARD" Farm__Models__bench="synthetic:$MS_PER_STEP" Urls="http://127.0.0.1:0" Logging__LogLevel__Default=Warning \
    Logging__LogLevel__RenderFarm.Worker.WorkerLoop=Debug Logging__Console__FormatterOptions__SingleLine=true \
    Logging__Console__FormatterOptions__UseUtcTimestamp=true Logging__Console__FormatterOptions__TimestampFormat="yyyy-MM-ddTHH:mm:ss.fffZ " \
    dotnet "$(dll Worker RenderFarm.Worker)" >"$state/worker-$i.log" 2>&1 &
  pids+=($!)
done
deadline=$((SECONDS + 180))
until [ "$(farm --api-key "$key_a" workers --json 2>/dev/null | python3 -c 'import json,sys; print(sum(w["state"] == "idle" for w in json.load(sys.stdin)))' 2>/dev/null || echo 0)" -ge "$WORKERS" ]; do
  [ $SECONDS -ge $deadline ] && { echo "workers did not all register; see $state" >&2; KEEP=1; exit 1; }
  sleep 0.5
done

seq 1 "$A_IMAGES" | sed 's/^/tenant A prompt /' >"$state/a.txt"
seq 1 "$B_IMAGES" | sed 's/^/tenant B prompt /' >"$state/b.txt"
submit() { farm --api-key "$1" submit "$2" --model bench --size 64x64 --steps "$STEPS" --seed 1 2>/dev/null | tail -1; }
job_a=$(submit "$key_a" "$state/a.txt")
sleep "$B_DELAY"
job_b=$(submit "$key_b" "$state/b.txt")
echo "A $job_a ($A_IMAGES images), B $job_b ($B_IMAGES images)" >&2

wait_finished() {
  local key=$1 job=$2 deadline=$((SECONDS + 1800))
  until farm --api-key "$key" status "$job" --json 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("finished") else 1)'; do
    [ $SECONDS -ge $deadline ] && { echo "job $job did not finish in time" >&2; KEEP=1; exit 1; }
    sleep 0.5
  done
}
wait_finished "$key_b" "$job_b"
echo "B finished; waiting for A" >&2
wait_finished "$key_a" "$job_a"
# The jobs' own event logs (WatchJob over HTTP/JSON from the start: it ends with job_finished), and their statuses.
for t in a b; do
  key=key_$t; job=job_$t
  curl -fsS "http://127.0.0.1:$web_port/v1/jobs/${!job}/events" -H "x-api-key: ${!key}" >"$state/events-$t.json"
  curl -fsS "http://127.0.0.1:$web_port/v1/jobs/${!job}" -H "x-api-key: ${!key}" >"$state/status-$t.json"
done

python3 - "$state" "$MS_PER_STEP" "$STEPS" "$WORKERS" <<'PY'
import json, statistics, sys
state, ms, steps, workers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def events(name):
    # WatchJob over HTTP/JSON streams one JSON object per event, back to back.
    text, decoder, out, i = open(f"{state}/events-{name}.json").read(), json.JSONDecoder(), [], 0
    while i < len(text):
        while i < len(text) and text[i] in " \r\n\t,[]": i += 1
        if i >= len(text): break
        obj, i = decoder.raw_decode(text, i)
        out.append(obj.get("result", obj))
    return out
def status(name): return json.load(open(f"{state}/status-{name}.json"))
a, b = status("a"), status("b")
ea, eb = events("a"), events("b")
ms_of = lambda e: int(e["unixMs"])
def device_starts(evs):
    """Per shard: when its render began on the device, at the latest: its first image_done (sent after the whole
    batch rendered) less the batch's device time (render_seconds is the batch's time over its images)."""
    sizes = {e["shardStarted"].get("shardIndex", 0): e["shardStarted"].get("imageCount", 0) for e in evs if "shardStarted" in e}
    starts, device = {}, {}
    for e in evs:
        if "imageDone" in e:
            d = e["imageDone"]; i = d.get("shardIndex", 0)
            if i not in starts:
                device[i] = d.get("renderSeconds", 0) * 1000 * sizes.get(i, 1)
                starts[i] = ms_of(e) - device[i]
    return starts, device
a_starts, a_device = device_starts(ea)
b_starts, _ = device_starts(eb)
# One shard time: the median device time of A's (full) shards.
shard_ms = statistics.median(a_device.values())
b_created, b_finished = int(b["createdUnixMs"]), int(b["finishedUnixMs"])
a_created, a_finished = int(a["createdUnixMs"]), int(a["finishedUnixMs"])
# When B's first shard really started: the workers log each shard the moment the device takes it (the events above
# arrive later, behind the previous shard's image reports), with UTC timestamps.
import datetime, glob, re
device_log = []
for path in glob.glob(f"{state}/worker-*.log"):
    for line in open(path):
        m = re.match(r"^(\S+Z) dbug: .*Shard (\w+)/(\d+) started on the device", line)
        if m:
            when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
            device_log.append((int(when.timestamp() * 1000), m.group(2), int(m.group(3))))
b_logged = [t for t, job, _ in device_log if job == b["jobId"]]
b_first = min(b_logged) if b_logged else min(b_starts.values())
b_first_event = min(ms_of(e) for e in eb if "shardStarted" in e)
b_done = int(b.get("imagesDone", 0)); a_done = int(a.get("imagesDone", 0))
row = dict(
    shard_ms=shard_ms, ideal_ms=ms * steps, b_first_start_ms=b_first - b_created, b_first_started_event_ms=b_first_event - b_created,
    b_wall_ms=b_finished - b_created, a_wall_ms=a_finished - a_created, b_done=b_done, a_done=a_done)
print("| A images | B images | workers | shard ms (median device time; ideal) | B first start ms (worker log; shard_started event) | **B first start / shard** | B wall ms | **B wall / shard** | A wall s | **B finish / A finish** (from A's submit) |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
print(f"| {a_done:,} | {b_done} | {workers} | {shard_ms:.0f} ({ms * steps:.0f}) | {b_first - b_created:.0f} ({b_first_event - b_created}) | "
      f"**{(b_first - b_created) / shard_ms:.2f}** | {b_finished - b_created} | **{(b_finished - b_created) / shard_ms:.2f}** | "
      f"{(a_finished - a_created) / 1000:.1f} | **{(b_finished - a_created) / (a_finished - a_created):.4f}** |")
json.dump(row, open(f"{state}/row.json", "w"))
PY
