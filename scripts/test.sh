#!/usr/bin/env bash
# Runs every test: the .NET suites (unit, integration against a real redis-server, end to end, fault injection), the
# offline deployment checks, and a smoke run of the deployment's entry points. Ends with one summary line:
# "tests: N passed, N failed, N skipped". Extra arguments go to `dotnet test` (e.g. --filter).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_redis
# node + npm: the S3 store's tests run against s3rver (npm). They are required here, not skipped: CI must not pass with
# the S3 store untested because a fresh machine lacked node.
ensure_commands node:nodejs npm:npm
# chromium: the dashboard's browser tests (Playwright drives Debian's chromium; no browser is downloaded). npm above
# also builds the dashboard's page files during the coordinator's build.
ensure_commands chromium:chromium
# curl, jq and python3's requests: the README's HTTP/JSON examples, which a test runs as written (ReadmeExampleTests).
ensure_commands curl:curl jq:jq
ensure_python_modules requests:python3-requests
export RENDERFARM_REQUIRE_S3_TESTS=1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test RenderFarm.sln -c Release -nologo "$@" 2>&1 | tee -a "$log" || status=1
if [ $# -eq 0 ]; then  # a filtered run is about .NET tests only
  bash scripts/validate-deploy.sh 2>&1 | tee -a "$log" || status=1
  bash scripts/deploy-smoke.sh k8s-cpu k8s-cpu-s3 compose 2>&1 | tee -a "$log" || status=1
fi

# Sum dotnet's per-assembly lines ("Passed!  - Failed: 0, Passed: 12, Skipped: 0, ...") and the scripts'
# "N passed, N failed[, N skipped]" lines; an aborted test run counts as one failure.
read -r passed failed skipped < <(awk '
  /(Passed|Failed)! +- Failed:/ {
    n = split($0, parts, ",")
    for (i = 1; i <= n; i++) if (match(parts[i], /(Failed|Passed|Skipped): +[0-9]+/)) {
      split(substr(parts[i], RSTART, RLENGTH), kv, /: +/); count[kv[1]] += kv[2] }
    next }
  /The active test run was aborted/ { count["Failed"] += 1; next }  # a crashed test host reports no counts of its own
  /^deploy (checks|smoke).*: [0-9]+ passed, [0-9]+ failed/ {
    if (match($0, /[0-9]+ passed/)) count["Passed"] += substr($0, RSTART, RLENGTH) + 0
    if (match($0, /[0-9]+ failed/)) count["Failed"] += substr($0, RSTART, RLENGTH) + 0
    if (match($0, /[0-9]+ skipped/)) count["Skipped"] += substr($0, RSTART, RLENGTH) + 0 }
  END { print count["Passed"] + 0, count["Failed"] + 0, count["Skipped"] + 0 }' "$log")
# What failed, named again just above the summary: CI keeps only the tail of a long log.
if [ "$failed" -ne 0 ] || [ "$status" -ne 0 ]; then
  echo "what failed:"
  grep -E '^\s+Failed [A-Za-z_]|The active test run was aborted|Test host process crashed|^FAIL |error [A-Z]+[0-9]+:' "$log" | sort -u | head -40 || true
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
if [ "$passed" -eq 0 ]; then echo "no test ran" >&2; exit 1; fi
