# Shared helpers for the scripts in this folder (sourced, not run).

# Installs Debian packages (as root where we are root, as CI is; else through sudo). DEBIAN_FRONTEND goes through
# `env`, after sudo: sudo's env_reset would drop it from the caller's environment.
apt_install() {
  [ $# -eq 0 ] && return 0
  echo "==> installing $*" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Installs, from Debian's packages, the packages whose commands the machine lacks.
#   ensure_commands redis-server:redis-server node:nodejs      (command:package ...)
ensure_commands() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  apt_install "${missing[@]}"
}

# Installs, from Debian's packages, the packages of the modules python3 cannot import.
#   ensure_python_modules requests:python3-requests      (module:package ...)
ensure_python_modules() {
  local missing=() pair
  for pair in "$@"; do
    python3 -c "import ${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  apt_install "${missing[@]}"
}

# What every script here needs: redis-server for the farm, python3 for free_port, curl for health checks.
ensure_redis() {
  ensure_commands redis-server:redis-server python3:python3 curl:curl
}

# Prints N distinct TCP ports (one per line) that nothing is bound to, below the kernel's ephemeral range: a port the
# kernel hands out (bind to port 0) is one an outgoing connection may take before the server that was to listen there
# binds it (a redis-cli ping, say), and that server then fails with "address already in use".
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    low = 32768
ports = []
while len(ports) < int(sys.argv[1]):
    port = random.randint(10000, low - 1 if low > 11000 else 65535)
    if port in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port))
        ports.append(port)
    except OSError:
        pass
    finally:
        s.close()
print("\n".join(map(str, ports)))
PY
}

# Prints one such port.
free_port() { free_ports 1; }

# Waits until a command succeeds, up to $1 seconds.
wait_for() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}
