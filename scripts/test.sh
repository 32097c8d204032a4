#!/usr/bin/env bash
# Runs every test in the solution (unit, integration against a real redis-server, end to end) and prints one
# summary line: "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_redis

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test RenderFarm.sln -c Release -nologo "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Sum the per-assembly lines ("Passed!  - Failed: 0, Passed: 12, Skipped: 0, Total: 12, ...").
read -r passed failed skipped < <(awk -F'[:,]' '/(Passed|Failed)! +- Failed:/ {
    for (i = 1; i < NF; i++) { k=$i; gsub(/.*[ !-]/, "", k); v=$(i+1)+0
      if (k == "Failed") f += v; if (k == "Passed") p += v; if (k == "Skipped") s += v } }
  END { print p+0, f+0, s+0 }' "$log")
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
if [ "$passed" -eq 0 ]; then echo "no test ran" >&2; exit 1; fi
