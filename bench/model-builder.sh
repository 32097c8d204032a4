#!/usr/bin/env bash
# Model builder benchmark (bench/model-builder.md): creates PRESET into a temporary directory through the real CLI
# (wall time and peak RSS from /usr/bin/time), then bench/ModelBuilderBench loads every component in ONNX Runtime
# (timed, two session setups) and times one UNet step at SIZE×SIZE, batch BATCH (CFG), RUNS times (min / median).
#   bench/model-builder.sh [PRESET]        (default sd15: writes ~4 GB, takes minutes on 2 cores; tiny: seconds)
# Environment: SIZE (512), BATCH (2), RUNS (5), TMPDIR (where the model goes; needs ~4.5 GB free for sd15),
#   KEEP=1 keeps the model directory, NO_BUILD=1 skips the Release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
preset=${1:-sd15}
SIZE=${SIZE:-512}; BATCH=${BATCH:-2}; RUNS=${RUNS:-5}

if [ "${NO_BUILD:-}" != 1 ]; then
  echo "==> building (Release)" >&2
  for p in src/ModelBuilder bench/ModelBuilderBench; do dotnet build "$p" -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null; done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/model-builder-bench.XXXXXX")
cleanup() { if [ "${KEEP:-}" = 1 ]; then echo "kept $work/$preset" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT

echo "## Create: modelbuilder create $preset --out $work/$preset"
echo
/usr/bin/time -f '%e %M' -o "$work/time" \
  dotnet "$root/src/ModelBuilder/bin/Release/net10.0/RenderFarm.ModelBuilder.dll" create "$preset" --out "$work/$preset" | sed 's/^/    /'
read -r wall peak_kib <"$work/time"
echo
echo "- wall time ${wall} s (process start and JIT included), peak RSS $((peak_kib / 1024)) MiB, $(du -sh "$work/$preset" | cut -f1) on disk"
echo

dotnet "$root/bench/ModelBuilderBench/bin/Release/net10.0/ModelBuilderBench.dll" "$work/$preset" --size "$SIZE" --batch "$BATCH" --runs "$RUNS"
