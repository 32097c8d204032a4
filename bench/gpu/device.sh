#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, once every .gpuworkN folder made by bench/gpu/pack.sh has
# been copied to PARTS (default /tmp/gpuparts) by the calls before (bench/gpu/README.md). Reassembles and unpacks
# the payload, points LD_LIBRARY_PATH at the CUDA 13 / cuDNN 9 libraries of the machine's PyTorch environment, then
# runs GpuBench (sd15-fp16 at 512², 30 steps) and the PyTorch reference. Everything goes to $OUT/log.txt as it
# happens; the figures to $OUT/gpubench.json and $OUT/torch.json.
#   bash bench/gpu/device.sh [PARTS]      environment: BENCH_S (GpuBench budget, s), TORCH_S (0: no PyTorch run), GPUBENCH_ARGS
set -u
parts=${1:-/tmp/gpuparts}
out=${OUT:-/tmp/gpubench-out}; mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
start=$(date +%s)
ts() { echo "[device t=$(( $(date +%s) - start ))s] $*"; }
work=/tmp/gpubench; rm -rf "$work"; mkdir -p "$work"

ts "parts in $parts: $(ls -d "$parts"/.gpuwork* 2>/dev/null | tr '\n' ' ')"
(cd "$parts" && for d in .gpuwork*/; do (cd "$d" && sha256sum -c --quiet SHA256SUMS) || ts "CHECKSUM FAILED in $d"; done)
cat $(ls "$parts"/.gpuwork*/part.* | sort -t. -k3 -n) > "$work/payload"
read -r native_bytes expected < <(cat "$parts"/.gpuwork*/PAYLOAD 2>/dev/null)
actual=$(sha256sum "$work/payload" | cut -d' ' -f1)
[ "${expected:-}" = "$actual" ] || { ts "PAYLOAD CHECKSUM MISMATCH (expected ${expected:-none}, got $actual): a part is missing or stale"; exit 2; }
head -c "$native_bytes" "$work/payload" | xz -T0 -dc | tar -x -C "$work"
tail -c +"$((native_bytes + 1))" "$work/payload" | xz -T0 -dc | tar -x -C "$work"
rm "$work/payload"
(cd "$work/native" && sha256sum -c --quiet SHA256SUMS.native) && mv "$work"/native/*.so "$work/publish/" && ts "unpacked: $(du -sh "$work/publish" | cut -f1)"

# CUDA 13 and cuDNN 9 come with PyTorch here: every folder of its nvidia/ packages that holds a shared library.
original_ld=${LD_LIBRARY_PATH:-}
nvidia=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || echo /opt/torch/.venv/lib/python3.12/site-packages/nvidia)
export LD_LIBRARY_PATH="$(find "$nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')${original_ld}"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.max.sm --format=csv
ts "CUDA provider's libraries:"; ldd "$work/publish/libonnxruntime_providers_cuda.so" | grep -E 'cuda|cublas|cudnn|curand|cufft|not found'
python3 -c 'import tensorrt; print("TensorRT", tensorrt.__version__)' 2>/dev/null || ts "no TensorRT in this environment: the tensorrt provider cannot be measured here"

ts "=== GpuBench"
# Tiered compilation off: every method is compiled once, fully optimised, so the timed requests are the steady
# state a long-running worker reaches (bench/pipeline.md: tiered JIT otherwise runs through the first ~100 requests).
# GPUBENCH_ARGS come first: the first occurrence of an option wins.
DOTNET_TieredCompilation=0 DOTNET_gcServer=0 timeout "${BENCH_S:-360}" "$work/publish/GpuBench" ${GPUBENCH_ARGS:-} --preset sd15-fp16 \
  --dir /tmp/m-sd15-fp16 --size 512 --steps 30 --batches 1,4,8 --reps 3 --fp32-preset sd15 --json "$out/gpubench.json"
ts "GpuBench rc=$?"

if [ "${TORCH_S:-200}" = 0 ]; then
  ts "=== PyTorch reference skipped (TORCH_S=0)"
else
  ts "=== PyTorch reference"
  mkdir -p "$work/diffusers" && tar -xzf "$work/diffusers_src.tar.gz" -C "$work/diffusers"
  LD_LIBRARY_PATH="$original_ld" PYTHONPATH="$work/diffusers/src" HF_HUB_OFFLINE=1 OUT="$out" PYTHONUNBUFFERED=1 \
    timeout "${TORCH_S:-200}" python3 "$work/torchref.py"
  ts "torch rc=$?"
fi
nvidia-smi --query-gpu=memory.used --format=csv
ts "ALL DONE"
