# Shared helpers for the scripts in this folder (sourced, not run).

# Installs Debian packages (root on a fresh machine, else through sudo).
apt_install() {
  [ $# -eq 0 ] && return 0
  echo "==> installing $*" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
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

# Prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until a command succeeds, up to $1 seconds.
wait_for() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}
