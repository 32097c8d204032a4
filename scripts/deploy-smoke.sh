#!/usr/bin/env bash
# Smoke test of the deployment files without Docker or a cluster: publishes the coordinator and the CPU worker exactly
# as their images' build stages do, starts them as plain processes with the environment that docker-compose.yml (or
# a rendered Kubernetes overlay) gives their containers — service hosts rewritten to 127.0.0.1 on free ports,
# container paths moved under a scratch folder — against a local redis-server with the password from the example
# settings, writes the tiny model where the worker's Farm__Models__<default model> points, and renders one image
# with `farm submit --watch --out`. Stops everything it started, also on Ctrl-C or error. Several modes share one
# publish and run one after the other. k8s-cpu-s3 is the cpu overlay with components/s3-results, against s3rver (the
# S3 server the tests use) standing in for the bucket: the worker must upload the image there itself.
#   scripts/deploy-smoke.sh [compose|k8s-cpu|k8s-cpu-s3]...     (default: compose)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh
source deploy/validate/tools.sh
modes=("$@"); [ ${#modes[@]} -eq 0 ] && modes=(compose)
for mode in "${modes[@]}"; do
  case "$mode" in compose|k8s-cpu|k8s-cpu-s3) ;; *) echo "usage: $0 [compose|k8s-cpu|k8s-cpu-s3]..." >&2; exit 2 ;; esac
done
mode=${modes[0]}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

scratch=$(mktemp -d "${TMPDIR:-/tmp}/deploy-smoke.XXXXXX")
pids=()
# Newest first: worker, coordinator, redis (each gets SIGTERM and is waited for, as an orchestrator would).
stop_all() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  pids=()
}
cleanup() {
  local code=$?
  stop_all
  if [ $code -ne 0 ]; then
    echo "deploy smoke ($mode): FAILED; logs:" >&2
    for log in "$scratch"/*.log "$scratch"/*/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -25 "$log" >&2; }; done
  fi
  [ -n "${KEEP_SMOKE:-}" ] || rm -rf "$scratch"
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_redis
ensure_validate_tools "$root"
ensure_kubectl || { echo "kubectl with kustomize v5 is required (deploy/validate/tools.sh, ensure_kubectl)" >&2; exit 1; }

echo "==> publishing as the images do (deploy/docker/*.Dockerfile build stages)"
build="$scratch/build"
mkdir -p "$build"
(cd "$tools" && node dockerfiles.mjs build "$root" "$root/deploy/docker/coordinator.Dockerfile" "$build") >"$scratch/publish.log" 2>&1
(cd "$tools" && node dockerfiles.mjs build "$root" "$root/deploy/docker/worker.Dockerfile" "$build" FLAVOR=cpu) >>"$scratch/publish.log" 2>&1
# The client as the README installs it (one NativeAOT executable), and the model builder from the build context's copy.
bash "$root/scripts/install-farm.sh" --publish-only "$scratch/client" >>"$scratch/publish.log" 2>&1
(cd "$build/ctx/src" && dotnet publish src/ModelBuilder -c Release -o "$scratch/modelbuilder" -v quiet -nologo) >>"$scratch/publish.log" 2>&1
coordinator_app="$build/coordinator/app"
worker_app="$build/worker/app"

# One deployment flavour: its environment, a fresh Redis, coordinator and worker, one image.
smoke() {
  mode=$1  # global: the exit trap names the failing mode
  local run="$scratch/$1"
  mkdir -p "$run"
  # Metrics on ports of their own (compose gives both apps 9464, as separate containers may); s3rver's last.
  local ports; mapfile -t ports < <(free_ports 6)
  redis_port=${ports[0]}; coord_port=${ports[1]}; worker_port=${ports[2]}; coord_metrics=${ports[3]}; worker_metrics=${ports[4]}
  fs="$run/fs" # container paths (/data/results, /models/...) live under here
  rewrites=(--host "redis=127.0.0.1:$redis_port" --host "coordinator=127.0.0.1:$coord_port"
    --listen "coordinator=$coord_port" --listen "worker=$worker_port" --root "$fs")
  local overlay="$scratch/k8s/overlays/cpu" coord_only=()
  if [ "$mode" = k8s-cpu-s3 ]; then
    # The component's endpoint (minio...:9000) becomes a local s3rver with its bucket; its fixed key replaces the example's.
    local s3dir="$root/tests/Farm.Tests/Storage/s3server" s3_port
    [ -f "$s3dir/node_modules/s3rver/bin/s3rver.js" ] || (cd "$s3dir" && npm ci --no-audit --no-fund >"$run/npm.log" 2>&1)
    s3_port=${ports[5]}
    echo "==> s3rver on 127.0.0.1:$s3_port"
    node "$s3dir/node_modules/s3rver/bin/s3rver.js" -d "$run/s3" -a 127.0.0.1 -p "$s3_port" --silent --no-vhost-buckets >"$run/s3rver.log" 2>&1 &
    pids+=($!)
    wait_for 30 curl -s -o /dev/null "http://127.0.0.1:$s3_port/" || { echo "s3rver did not start" >&2; exit 1; }
    rewrites+=(--host "minio=127.0.0.1:$s3_port")
    coord_only+=(--set Farm__S3__AccessKey=S3RVER --set Farm__S3__SecretKey=S3RVER)
  fi
  if [ "$mode" = compose ]; then
    echo "==> environment from docker-compose.yml (services coordinator, worker-cpu; .env = deploy/compose.env.example)"
    mapfile -t coord_env < <(cd "$tools" && node smoke-env.mjs "$root" compose coordinator "${rewrites[@]}" --set "Farm__Telemetry__PrometheusPort=$coord_metrics")
    mapfile -t worker_env < <(cd "$tools" && node smoke-env.mjs "$root" compose worker-cpu "${rewrites[@]}" --set "Farm__Telemetry__PrometheusPort=$worker_metrics")
  else
    rm -rf "$scratch/k8s" && cp -r deploy/k8s "$scratch/k8s"
    if [ "$mode" = k8s-cpu-s3 ]; then overlay=$(overlay_with_component "$scratch/k8s" cpu s3-results); fi
    echo "==> environment from ${overlay#"$scratch"/} (Secrets from deploy/k8s/secrets/**/*.env.example)"
    kubectl kustomize "$overlay" >"$scratch/render.yaml"
    render_secrets "$scratch/k8s" "$scratch/secrets.yaml"
    mapfile -t coord_env < <(cd "$tools" && node smoke-env.mjs "$root" k8s "$scratch/render.yaml" "$scratch/secrets.yaml" coordinator "${rewrites[@]}" "${coord_only[@]}" --set "Farm__Telemetry__PrometheusPort=$coord_metrics")
    mapfile -t worker_env < <(cd "$tools" && node smoke-env.mjs "$root" k8s "$scratch/render.yaml" "$scratch/secrets.yaml" worker "${rewrites[@]}" --set "Farm__Telemetry__PrometheusPort=$worker_metrics")
  fi
  [ "${#coord_env[@]}" -gt 0 ] && [ "${#worker_env[@]}" -gt 0 ] || { echo "no environment extracted" >&2; exit 1; }
  printf '    coordinator: %s\n' "${coord_env[@]}" | sed -E 's/(password=)[^,]*/\1***/; s/(PASSWORD=|SecretKey=).*/\1***/'
  printf '    worker:      %s\n' "${worker_env[@]}" | sed -E 's/(password=)[^,]*/\1***/; s/(PASSWORD=).*/\1***/'
  value() { # KEY ENTRIES...
    local key=$1; shift
    local kv; for kv in "$@"; do [ "${kv%%=*}" = "$key" ] && { echo "${kv#*=}"; return 0; }; done; return 1
  }
  redis_conn=$(value Farm__Redis "${coord_env[@]}")
  password=$(sed -nE 's/.*(^|,)password=([^,]*).*/\2/p' <<<"$redis_conn")
  default_model=$(value Farm__DefaultModel "${coord_env[@]}")
  model_dir=$(value "Farm__Models__$default_model" "${worker_env[@]}") \
    || { echo "the worker serves no Farm__Models__$default_model (the coordinator's default model)" >&2; exit 1; }
  if [ "$mode" = k8s-cpu-s3 ]; then
    bucket=$(value Farm__Storage "${coord_env[@]}" | sed -E 's#^s3://([^/]+).*#\1#')
    s3_endpoint=$(value Farm__S3__Endpoint "${coord_env[@]}")
    curl -fsS -X PUT "$s3_endpoint/$bucket" >/dev/null || { echo "could not create bucket $bucket" >&2; exit 1; }  # s3rver checks no signature here
  fi

  echo "==> redis-server on 127.0.0.1:$redis_port (password and AOF as deployed)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run" --appendonly yes --save "" \
    --requirepass "$password" >"$run/redis.log" 2>&1 &
  pids+=($!)
  wait_for 20 env REDISCLI_AUTH="$password" redis-cli -p "$redis_port" ping || { echo "redis did not start" >&2; exit 1; }

  echo "==> tiny model for '$default_model' at $model_dir"
  dotnet "$scratch/modelbuilder/RenderFarm.ModelBuilder.dll" create tiny --out "$model_dir" >"$run/model.log" 2>&1

  # Each app runs from its publish folder (the image's WORKDIR) with only the deployment's environment.
  base_env=(PATH="$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1)
  [ -n "${DOTNET_ROOT:-}" ] && base_env+=(DOTNET_ROOT="$DOTNET_ROOT")
  echo "==> coordinator on 127.0.0.1:$coord_port"
  (cd "$coordinator_app" && exec env -i "${base_env[@]}" "${coord_env[@]}" dotnet RenderFarm.Coordinator.dll) >"$run/coordinator.log" 2>&1 &
  pids+=($!)
  # The images' HEALTHCHECK: the app's gRPC health command, with the container's environment (so the rewritten port).
  coordinator_health() { (cd "$coordinator_app" && env -i "${base_env[@]}" "${coord_env[@]}" dotnet RenderFarm.Coordinator.dll health >/dev/null 2>&1); }
  wait_for 60 coordinator_health || { echo "coordinator did not become healthy" >&2; exit 1; }

  # Keys as an operator creates them (the deployment's placeholders are replaced by real ones).
  new_key() { (cd "$coordinator_app" && env -i "${base_env[@]}" "${coord_env[@]}" dotnet RenderFarm.Coordinator.dll keys create --tenant smoke --role "$1" 2>/dev/null); }
  worker_key=$(new_key worker) && client_key=$(new_key client) || { echo "could not create API keys" >&2; exit 1; }
  worker_env+=("Farm__ApiKey=$worker_key")

  echo "==> worker (health on 127.0.0.1:$worker_port)"
  (cd "$worker_app" && exec env -i "${base_env[@]}" "${worker_env[@]}" dotnet RenderFarm.Worker.dll) >"$run/worker.log" 2>&1 &
  pids+=($!)
  # Ready: models warmed up, Redis answering, welcomed by the coordinator.
  worker_health() { (cd "$worker_app" && env -i "${base_env[@]}" "${worker_env[@]}" dotnet RenderFarm.Worker.dll health >/dev/null 2>&1); }
  wait_for 60 worker_health || { echo "worker did not become healthy" >&2; exit 1; }

  echo "==> farm submit --size 64x64 --steps 4 --watch"
  echo "a lighthouse on a cliff at dusk" >"$run/prompts.txt"
  out="$run/out"
  FARM_COORDINATOR="http://127.0.0.1:$coord_port" FARM_API_KEY="$client_key" timeout 300 "$scratch/client/farm" \
    submit "$run/prompts.txt" --size 64x64 --steps 4 --watch --out "$out" >"$run/farm.log" 2>&1 \
    || { echo "farm submit failed" >&2; exit 1; }

  pngs=$(find "$out" -name '*.png' | wc -l)
  first=$(find "$out" -name '*.png' | head -1)
  if [ "$pngs" -lt 1 ] || [ "$(head -c 8 "$first" | od -An -tx1 | tr -d ' \n')" != "89504e470d0a1a0a" ]; then
    echo "no PNG rendered" >&2; exit 1
  fi
  metric() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 ~ "^"name"({|$)" { sum += $NF } END { print sum + 0 }'; }
  if [ "$mode" = k8s-cpu-s3 ]; then
    # The worker put it into the bucket itself (Farm__S3__DirectUploads), and `farm` fetched it from there.
    stored=$(metric "$coord_metrics" renderfarm_results_uploaded_total)
    [ "$stored" -ge 1 ] || { echo "no result was uploaded straight to the bucket" >&2; exit 1; }
  else
    stored=$(find "$fs" -path '*results*' -name '*.png' | wc -l)
    [ "$stored" -ge 1 ] || { echo "the coordinator stored no PNG under its Farm__Storage" >&2; exit 1; }
  fi
  # Prometheus can scrape both apps (HTTP/1.1), and the coordinator counted the image it stored.
  [ "$(metric "$coord_metrics" renderfarm_images_rendered_total)" -ge 1 ] \
    || { echo "the coordinator's /metrics does not count the image" >&2; exit 1; }
  [ "$(metric "$worker_metrics" renderfarm_worker_images_rendered_total)" -ge 1 ] \
    || { echo "the worker's /metrics does not count the image" >&2; exit 1; }
  local by="stored by the coordinator"; [ "$mode" = k8s-cpu-s3 ] && by="uploaded to the bucket by the worker"
  echo "deploy smoke ($mode): 1 passed, 0 failed ($pngs PNG rendered, $stored $by, both counted in /metrics)"
  stop_all
}

for mode in "${modes[@]}"; do smoke "$mode"; done
