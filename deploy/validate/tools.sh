# Sourced by scripts/validate-deploy.sh and scripts/deploy-smoke.sh: installs the validator's tools (node/npm from
# Debian if missing; the npm packages pinned by deploy/validate/package-lock.json, cached) and sets $tools to the
# folder to run deploy/validate/*.mjs from. Returns non-zero, with a message on stderr, when that fails.
ensure_validate_tools() {
  local repo=$1
  export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
  tools=${RENDERFARM_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/renderfarm/deploy-validate}
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "    installing nodejs + npm (Debian)" >&2
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null || return 1
  fi
  mkdir -p "$tools"
  local stamp
  stamp=$(cat "$repo/deploy/validate/package.json" "$repo/deploy/validate/package-lock.json" | sha256sum | cut -c1-16)
  if [ "$(cat "$tools/.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -d "$tools/node_modules" ]; then
    echo "    npm ci (pinned: deploy/validate/package-lock.json) into $tools" >&2
    cp "$repo/deploy/validate/package.json" "$repo/deploy/validate/package-lock.json" "$tools/"
    rm -rf "$tools/node_modules" "$tools/.stamp"
    local log; log=$(mktemp)
    if ! (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$log"); then
      cat "$log" >&2; rm -f "$log"; echo "npm ci of the validator's packages failed" >&2; return 1
    fi
    rm -f "$log"
    echo "$stamp" >"$tools/.stamp"
  fi
  cp "$repo"/deploy/validate/*.mjs "$tools/"
}

# Writes K8S_DIR/overlays/BASE-COMPONENT, the overlay BASE with components/COMPONENT added (as deploy/README.md tells a
# user to), and prints its folder.
overlay_with_component() { # K8S_DIR BASE COMPONENT
  local dir="$1/overlays/$2-$3"
  mkdir -p "$dir"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../%s]\ncomponents: [../../components/%s]\n' "$2" "$3" \
    >"$dir/kustomization.yaml"
  echo "$dir"
}

# Renders every Secret the manifests refer to (K8S_DIR/secrets and secrets/s3, from their *.env.example files, in that
# copy of deploy/k8s) into OUT, one multi-document file.
render_secrets() { # K8S_DIR OUT
  local example
  for example in "$1"/secrets/*.env.example "$1"/secrets/*/*.env.example; do cp "$example" "${example%.example}"; done
  { kubectl kustomize "$1/secrets" && echo "---" && kubectl kustomize "$1/secrets/s3"; } >"$2"
}
