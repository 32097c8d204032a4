# syntax=docker/dockerfile:1
# RenderFarm worker, one Dockerfile for both flavours (BuildKit builds only the stages FLAVOR needs):
#   docker build -f deploy/docker/worker.Dockerfile --build-arg FLAVOR=cpu -t renderfarm-worker:cpu .
#   docker build -f deploy/docker/worker.Dockerfile --build-arg FLAVOR=gpu -t renderfarm-worker:gpu .
# cpu: ASP.NET Core runtime image + the CPU ONNX Runtime package.
# gpu: NVIDIA CUDA 13 + cuDNN 9 runtime image + the .NET runtime copied from the official image. The CUDA major must
#      be the one Microsoft.ML.OnnxRuntime.Gpu links against: 1.32's libonnxruntime_providers_cuda.so NEEDS
#      libcudart.so.13, libcublas.so.13, libcublasLt.so.13 and libcurand.so.10 (CUDA 13), and cuDNN 9.
#      scripts/validate-deploy.sh reads those NEEDED entries from the published provider and fails when CUDA_IMAGE's
#      CUDA or cuDNN major differs, so a package bump that moves to another CUDA fails CI, not a cluster.
#      Tag format: NVIDIA's nvidia/cuda:<CUDA x.y.z>-cudnn-runtime-ubuntu24.04 (the "cudnn" images of CUDA 12.x/13.x
#      carry cuDNN 9). Hosts need an NVIDIA driver that supports CUDA 13 (R580 or newer) and the NVIDIA container
#      toolkit; run with Farm__ExecutionProvider=cuda.
#      TensorRT (Farm__ExecutionProvider=tensorrt) also needs TensorRT 10 (the provider NEEDS libnvinfer.so.10):
#      build with --build-arg TENSORRT_VERSION=<NVIDIA apt version for CUDA 13, e.g. 10.14.1.48-1+cuda13.0>.
# Models are never baked in: mount them (read-only) and name them with Farm__Models__<name>=<dir>.
ARG FLAVOR=cpu
ARG DOTNET_VERSION=10.0
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---- build: the same commands scripts/validate-deploy.sh runs in CI (FLAVOR=cpu there) ----
FROM mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION} AS build
ARG FLAVOR
ARG TARGETARCH
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=nuget,target=/root/.nuget/packages \
    dotnet restore src/Worker/RenderFarm.Worker.csproj -a "$TARGETARCH" -p:OnnxRuntimeFlavor="$FLAVOR"
RUN --mount=type=cache,id=nuget,target=/root/.nuget/packages \
    dotnet publish src/Worker/RenderFarm.Worker.csproj -c Release -a "$TARGETARCH" --self-contained false --no-restore -p:OnnxRuntimeFlavor="$FLAVOR" -p:UseAppHost=false -o /app

# ---- runtime bases ----
FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS runtime-cpu
# glibc.malloc.hugetlb=1: malloc asks for transparent huge pages, so the activations ONNX Runtime allocates and frees
# on every step fault in 2 MiB at a time instead of 4 KiB (SD 1.5 at 256² on CPU: ~118k faults a request -> ~10k,
# ~10 % faster, lower peak RSS; bench/pipeline.md). Needs glibc >= 2.35 (this image has it) and THP enabled or madvise.
ENV Farm__ExecutionProvider=cpu \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1

FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS dotnet-runtime

FROM ${CUDA_IMAGE} AS runtime-gpu
# Empty: no TensorRT (the cuda provider needs none). Otherwise the version of NVIDIA's TensorRT 10 packages to install
# from the CUDA image's own apt repository; it must be a build for this image's CUDA major (…+cuda13.x).
ARG TENSORRT_VERSION=
# The .NET runtime's own dependencies (the official runtime-deps list, less ICU: the apps use invariant globalization).
# They are also all that the worker's other native libraries need: ONNX Runtime's CPU library and Skia's (SkiaSharp's
# NoDependencies variant, which decodes init images) need glibc, libstdc++ and libgcc only; validate-deploy checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libc6 libgcc-s1 libssl3t64 libstdc++6 tzdata zlib1g \
    && if [ -n "$TENSORRT_VERSION" ]; then \
         apt-get install -y --no-install-recommends "libnvinfer10=$TENSORRT_VERSION" "libnvinfer-plugin10=$TENSORRT_VERSION" \
           "libnvonnxparsers10=$TENSORRT_VERSION"; \
       fi \
    && rm -rf /var/lib/apt/lists/*
COPY --from=dotnet-runtime /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet
# Same non-root user as the official .NET images (uid/gid 1654), so volumes and securityContexts match both flavours.
# CUDA_DEVICE_ORDER=PCI_BUS_ID: CUDA numbers GPUs as nvidia-smi does, so a Farm__DeviceId or CUDA_VISIBLE_DEVICES index
# and the GPU `farm workers` reports for it are the same device on a machine with mixed GPUs.
ENV APP_UID=1654 \
    DOTNET_RUNNING_IN_CONTAINER=true \
    Farm__ExecutionProvider=cuda \
    CUDA_CACHE_PATH=/tmp/cuda-cache \
    CUDA_DEVICE_ORDER=PCI_BUS_ID
RUN groupadd --gid "$APP_UID" app \
    && useradd --uid "$APP_UID" --gid app --no-create-home --shell /usr/sbin/nologin app

# ---- final: whichever base FLAVOR names ----
FROM runtime-${FLAVOR} AS final
WORKDIR /app
COPY --from=build --chown=root:root /app ./
# Urls is the gRPC health endpoint (HTTP/2 only); ASPNETCORE_HTTP_PORTS (8080 in the official images) is cleared so only Urls binds.
# HostOptions__ShutdownTimeout is how long a SIGTERM'd worker may finish its shard: keep the orchestrator's stop
# grace period (compose stop_grace_period, k8s terminationGracePeriodSeconds) above it.
ENV Urls=http://0.0.0.0:5080 \
    ASPNETCORE_HTTP_PORTS= \
    HostOptions__ShutdownTimeout=00:00:30
EXPOSE 5080
USER $APP_UID
# The app asks its own gRPC health service on Urls: service "" = ready (models warmed up, Redis, coordinator).
# Loading and warming up a model takes minutes (more on a CPU), during which failed checks must not count: 10 min.
# docker-compose.yml allows GPU workers 30 min (a first TensorRT engine build).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
    CMD ["dotnet", "RenderFarm.Worker.dll", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dotnet", "RenderFarm.Worker.dll"]
