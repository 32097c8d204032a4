#!/usr/bin/env bash
# Renders a sample batch end to end on this machine: Redis, a coordinator and one worker on loopback, the bundled tiny
# model, and the `farm` client. Stops everything it started, also on Ctrl-C or error.
#   scripts/demo.sh [PROMPTS_FILE]      (default: scripts/sample-prompts.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

prompts=${1:-scripts/sample-prompts.txt}
state=${FARM_DEMO_DIR:-$root/.farm/demo}
model=${FARM_DEMO_MODEL:-$root/.farm/models/tiny}
out="$state/output"
bin=Release
mkdir -p "$state"

ensure_redis
# npm builds the dashboard's page files during `dotnet build` (embedded in the coordinator).
ensure_commands node:nodejs npm:npm
echo "==> building" >&2
dotnet build RenderFarm.sln -c $bin -v quiet -nologo -clp:ErrorsOnly >&2
dll() { echo "$root/src/$1/bin/$bin/net10.0/$2.dll"; }

if [ ! -f "$model/model_index.json" ]; then
  echo "==> writing the tiny model to $model" >&2
  dotnet "$(dll ModelBuilder RenderFarm.ModelBuilder)" create tiny --out "$model" >&2
fi
# Few-step distilled models (megabytes, a second to write): an LCM UNet and SD-Turbo, rendered with their own defaults.
distilled=$root/.farm/models
# Also the tiny SDXL base and refiner, for a base + refiner render, and a tiny model whose UNet takes ControlNet residuals.
for preset in tiny-lcm tiny-turbo tiny-sdxl tiny-sdxl-refiner tiny-control; do
  if [ ! -f "$distilled/$preset/model_index.json" ]; then
    echo "==> writing the $preset model to $distilled/$preset" >&2
    dotnet "$(dll ModelBuilder RenderFarm.ModelBuilder)" create "$preset" --out "$distilled/$preset" >&2
  fi
done

upscalers="$root/.farm/models/upscalers"
if [ ! -f "$upscalers/tiny-x2/model.onnx" ]; then
  echo "==> writing a tiny x2 upscaler to $upscalers/tiny-x2" >&2
  dotnet "$(dll ModelBuilder RenderFarm.ModelBuilder)" upscaler rrdb-tiny-x2 --out "$upscalers/tiny-x2" >&2
fi

controlnets="$root/.farm/models/controlnets"
if [ ! -f "$controlnets/canny/model.onnx" ]; then
  echo "==> writing a tiny ControlNet to $controlnets/canny" >&2
  dotnet "$(dll ModelBuilder RenderFarm.ModelBuilder)" controlnet tiny --out "$controlnets/canny" >&2
fi

pids=()
cleanup() {
  local code=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mapfile -t ports < <(free_ports 4)
redis_port=${ports[0]}; coord_port=${ports[1]}; worker_port=${ports[2]}; web_port=${ports[3]}
echo "==> starting redis on 127.0.0.1:$redis_port" >&2
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state" --appendonly yes --save "" >"$state/redis.log" 2>&1 &
pids+=($!)
wait_for 20 redis-cli -p "$redis_port" ping || { echo "redis did not start; see $state/redis.log" >&2; exit 1; }

export Farm__Redis="127.0.0.1:$redis_port"
# Local development only: no API keys. Deployments keep Farm:Auth:Mode=ApiKeys (the default).
export Farm__Auth__Mode=Disabled
echo "==> starting the coordinator on 127.0.0.1:$coord_port" >&2
Farm__Storage="$state/results" Farm__DefaultModel=tiny Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$coord_port" \
  Kestrel__Endpoints__Web__Url="http://127.0.0.1:$web_port" \
  dotnet "$(dll Coordinator RenderFarm.Coordinator)" >"$state/coordinator.log" 2>&1 &
pids+=($!)
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$coord_port/healthz" \
  || { echo "coordinator did not start; see $state/coordinator.log" >&2; exit 1; }

echo "==> starting a worker with models 'tiny' from $model, 'tiny-lcm', 'tiny-turbo', 'tiny-sdxl', 'tiny-sdxl-refiner', 'tiny-control'," \
  "the upscalers in $upscalers and the ControlNets in $controlnets" >&2
# env: a model name with a dash is not a shell variable name.
env Farm__Coordinator="http://127.0.0.1:$coord_port" Farm__Models__tiny="$model" Farm__Upscalers="$upscalers" Farm__WorkerId=demo-worker \
  "Farm__Models__tiny-lcm=$distilled/tiny-lcm" "Farm__Models__tiny-turbo=$distilled/tiny-turbo" \
  "Farm__Models__tiny-sdxl=$distilled/tiny-sdxl" "Farm__Models__tiny-sdxl-refiner=$distilled/tiny-sdxl-refiner" \
  "Farm__Models__tiny-control=$distilled/tiny-control" Farm__ControlNets="$controlnets" \
  Urls="http://127.0.0.1:$worker_port" \
  dotnet "$(dll Worker RenderFarm.Worker)" >"$state/worker.log" 2>&1 &
pids+=($!)
wait_for 60 curl -sf --http2-prior-knowledge "http://127.0.0.1:$worker_port/healthz" \
  || { echo "worker did not start; see $state/worker.log" >&2; exit 1; }

rm -rf "$out"
echo "==> dashboard: http://127.0.0.1:$web_port/ (authentication is off here: sign in with any key, e.g. demo)" >&2
echo "==> submitting $prompts" >&2
FARM_COORDINATOR="http://127.0.0.1:$coord_port" dotnet "$(dll Client farm)" \
  submit "$prompts" --size 64x64 --steps 12 --seed 42 --previews 2 --watch --out "$out"

echo "==> submitting scripts/sample-distilled.jsonl (LCM and Turbo, each with its model's steps and guidance)" >&2
FARM_COORDINATOR="http://127.0.0.1:$coord_port" dotnet "$(dll Client farm)" \
  submit scripts/sample-distilled.jsonl --size 64x64 --seed 42 --watch --out "$out/distilled"

# Hires fix and upscaling on the same farm: two prompts at 2x (128x128), then the tiny x2 upscaler (256x256).
echo "==> submitting two prompts with --hires 2x --upscale tiny-x2" >&2
grep -v -e '^#' -e '^[[:space:]]*$' "$prompts" | head -n 2 | FARM_COORDINATOR="http://127.0.0.1:$coord_port" dotnet "$(dll Client farm)" \
  submit - --size 64x64 --steps 8 --seed 42 --hires 2x --hires-steps 4 --hires-denoise 0.5 --upscale tiny-x2 --watch --out "$out/hires"

# SDXL base + refiner: the base renders 80% of the steps, the refiner the rest from its latents (one worker holds both here;
# on a farm the two stages go to whichever workers hold each model).
echo "==> submitting two prompts with --model tiny-sdxl --refiner tiny-sdxl-refiner --refiner-start 0.8" >&2
grep -v -e '^#' -e '^[[:space:]]*$' "$prompts" | head -n 2 | FARM_COORDINATOR="http://127.0.0.1:$coord_port" dotnet "$(dll Client farm)" \
  submit - --model tiny-sdxl --refiner tiny-sdxl-refiner --refiner-start 0.8 --size 64x64 --steps 10 --seed 42 --watch --out "$out/refiner"

# ControlNet: the first render of this demo, turned into Canny edges by the client, steers two prompts.
control_image=$(find "$out" -maxdepth 1 -name '*.png' | sort | head -n 1)
echo "==> submitting two prompts with --model tiny-control --control canny:$(basename "$control_image"):1.0:canny" >&2
grep -v -e '^#' -e '^[[:space:]]*$' "$prompts" | head -n 2 | FARM_COORDINATOR="http://127.0.0.1:$coord_port" dotnet "$(dll Client farm)" \
  submit - --model tiny-control --control "canny:$control_image:1.0:canny" --size 64x64 --steps 8 --seed 42 --watch --out "$out/controlnet"

count=$(find "$out" -name '*.png' | wc -l)
echo
echo "Rendered $count PNGs into: $out"
echo "(logs: $state/*.log)"
