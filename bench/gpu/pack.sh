#!/usr/bin/env bash
# Packs bench/gpu for the lent GPU machine (no .NET, no NuGet, no network; at most 64 MiB per device call):
# GpuBench published self-contained with the GPU flavour of ONNX Runtime, the ONNX Runtime native libraries (the
# CUDA provider alone is 289 MB and barely compresses), the PyTorch reference script and the diffusers source it
# imports. Two xz archives (the native libraries, kept between packs since they only change with the package; and
# the app), one after the other, split into .gpuwork1 … .gpuworkN (git-ignored), each with its SHA256SUMS and small enough to go in one device call
# with the working tree (64 MiB together).
# bench/gpu/README.md says how to carry them over and run bench/gpu/device.sh there.
#   bench/gpu/pack.sh [DIFFUSERS_SRC_TAR_GZ]   (default /tmp/diffusers_src.tar.gz: `src/` of huggingface/diffusers)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
diffusers=${1:-/tmp/diffusers_src.tar.gz}
[ -f "$diffusers" ] || { echo "pack: $diffusers not found (a tar.gz of huggingface/diffusers' src/ folder, for the PyTorch reference)" >&2; exit 2; }
work=${TMPDIR:-/tmp}/gpubench-pack
rm -rf "$work/tree" "$work/app" "$work/part."* && mkdir -p "$work/tree" "$work/app"

# A copy of the tree, so the GPU-flavour restore and build never touch this checkout's obj/ and bin/ folders.
tar -C "$root" --exclude='./.git' --exclude='*/bin' --exclude='*/obj' --exclude='./.gpuwork*' --exclude='./.farm' -cf - . | tar -C "$work/tree" -xf -
echo "==> publish GpuBench (linux-x64, self-contained, OnnxRuntimeFlavor=gpu)"
dotnet publish "$work/tree/bench/gpu/GpuBench/GpuBench.csproj" -c Release -r linux-x64 --self-contained \
  -p:OnnxRuntimeFlavor=gpu -nologo -o "$work/app/publish" | tail -2
pub=$work/app/publish
# The Gpu package also drops its Windows binaries (onnxruntime*.dll, ~220 MB) into a linux-x64 publish; TensorRT's
# provider is left out too (that machine has no TensorRT to load it).
rm -f "$pub"/onnxruntime*.dll "$pub"/libonnxruntime_providers_tensorrt.so "$pub"/*.pdb

# Native libraries: compressed once per package version (minutes of xz for the CUDA provider).
natives=(libonnxruntime.so libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
key=$( (cd "$pub" && sha256sum "${natives[@]}") | sha256sum | cut -c1-16)
if [ ! -f "$work/native-$key.tar.xz" ]; then
  echo "==> compress the native libraries ($(cd "$pub" && du -ch "${natives[@]}" | tail -1 | cut -f1))"
  rm -f "$work"/native-*.tar.xz
  mkdir -p "$work/native" && rm -f "$work/native/"*
  cp "${natives[@]/#/$pub/}" "$work/native/"
  (cd "$work/native" && sha256sum *.so > SHA256SUMS.native)
  tar -C "$work" -cf - native | xz -9 -T0 > "$work/native-$key.tar.xz.tmp" && mv "$work/native-$key.tar.xz.tmp" "$work/native-$key.tar.xz"
fi
rm -f "${natives[@]/#/$pub/}"
cp bench/gpu/torchref.py "$work/app/"
cp "$diffusers" "$work/app/diffusers_src.tar.gz"
echo "==> compress the app ($(du -sh "$work/app" | cut -f1))"
tar -C "$work/app" -cf - . | xz -6 -T0 > "$work/app.tar.xz"

cat "$work/native-$key.tar.xz" "$work/app.tar.xz" > "$work/payload"
ls -la "$work/native-$key.tar.xz" "$work/app.tar.xz"
rm -rf .gpuwork*/
# A device call carries its part and the whole working tree (tracked files, and untracked ones git does not ignore),
# 64 MiB in all: the parts are as large as leaves 2 MiB of that spare.
tree_bytes=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
part_mib=$(( (64 * 1048576 - tree_bytes) / 1048576 - 2 ))
[ "$part_mib" -ge 16 ] || { echo "pack: the tree alone is $((tree_bytes / 1048576)) MiB: no room for parts in a 64 MiB device call" >&2; exit 2; }
echo "==> parts of $part_mib MiB (the tree each call carries besides: $((tree_bytes / 1024)) KiB)"
split -b "${part_mib}M" -d -a 2 "$work/payload" "$work/part."
n=0
for part in "$work"/part.*; do
  n=$((n + 1))
  mkdir -p ".gpuwork$n"
  mv "$part" ".gpuwork$n/"
  (cd ".gpuwork$n" && sha256sum part.* > SHA256SUMS)
done
# How device.sh cuts the payload back into its two archives, and checks it.
echo "$(stat -c %s "$work/native-$key.tar.xz") $(sha256sum "$work/payload" | cut -d' ' -f1)" > ".gpuwork$n/PAYLOAD"
rm -f "$work/payload"
echo "pack: $n parts: $(ls -d .gpuwork*/ | tr '\n' ' ')"
