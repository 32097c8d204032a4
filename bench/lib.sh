# Shared by the farm benchmarks (bench/*.sh): build the three programs once (NO_BUILD=1 skips it) and run them from
# their Release output. Needs $root (the repository) and, for farm(), $coord_port.
bench_build() {
  if [ "${NO_BUILD:-}" != 1 ]; then
    echo "==> building (Release)" >&2
    for p in Coordinator Worker Client; do dotnet build "src/$p" -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null; done
  fi
}
dll() { echo "$root/src/$1/bin/Release/net10.0/$2.dll"; }
farm() { dotnet "$(dll Client farm)" --coordinator "http://127.0.0.1:$coord_port" "$@"; }
cpu_seconds() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }   # utime + stime, clock ticks of 1/100 s

# A run's folder ($state, ${TMPDIR:-/tmp}/<name>.XXXXXX) and its background processes: each script adds every process it starts
# to pids; however the script ends (done, failed, Ctrl-C), they are stopped and waited for, and the folder is removed
# unless KEEP=1. Usage: bench_run_setup farm-fairness
bench_run_setup() {
  state=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  pids=()
  trap bench_run_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_run_cleanup() {
  local code=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-}" = 1 ]; then echo "run folder kept: $state" >&2; else rm -rf "$state"; fi
  exit $code
}
