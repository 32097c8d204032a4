#!/usr/bin/env bash
# Publishes the `farm` CLI as one native executable (NativeAOT: no .NET runtime needed to run it, starts in
# milliseconds) and installs it. Publishing takes 1–3 minutes (native compile and link).
#   scripts/install-farm.sh                      # into /usr/local: lib/farm/{farm,libSkiaSharp.so}, bin/farm → it
#   PREFIX=$HOME/.local scripts/install-farm.sh  # no root needed
#   scripts/install-farm.sh --publish-only DIR   # publish into DIR, install nothing
# The executable is self-contained; libSkiaSharp.so beside it is loaded only by `farm pull --contact-sheet` (Skia
# draws the sheet), and needs libfontconfig1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

rid=linux-$(case "$(uname -m)" in x86_64) echo x64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)
publish_only=
if [ "${1:-}" = --publish-only ]; then
  publish_only=1 publish_dir=${2:?--publish-only needs a directory}
else
  publish_dir=$(mktemp -d /tmp/farm-publish.XXXXXX)
  trap 'rm -rf "$publish_dir"' EXIT
fi

# NativeAOT links with the platform C toolchain.
ensure_commands gcc:gcc
dotnet publish src/Client/RenderFarm.Client.csproj -c Release -r "$rid" -nologo -v quiet -clp:ErrorsOnly \
  -p:DebugType=none -p:StripSymbols=true -o "$publish_dir" >&2
rm -f "$publish_dir"/*.pdb "$publish_dir"/*.dbg
"$publish_dir/farm" --version >/dev/null   # the binary starts
if [ -n "$publish_only" ]; then echo "$publish_dir/farm"; exit 0; fi

prefix=${PREFIX:-/usr/local}
mkdir -p "$prefix/lib/farm" "$prefix/bin"
install -m 0755 "$publish_dir/farm" "$prefix/lib/farm/farm"
install -m 0644 "$publish_dir"/libSkiaSharp.so "$prefix/lib/farm/"
ln -sfn "$prefix/lib/farm/farm" "$prefix/bin/farm"
echo "installed $prefix/bin/farm → $prefix/lib/farm/farm ($("$prefix/bin/farm" --version))"
