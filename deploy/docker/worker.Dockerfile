# syntax=docker/dockerfile:1
# RenderFarm worker, one Dockerfile for both flavours (BuildKit builds only the stages FLAVOR needs):
#   docker build -f deploy/docker/worker.Dockerfile --build-arg FLAVOR=cpu -t renderfarm-worker:cpu .
#   docker build -f deploy/docker/worker.Dockerfile --build-arg FLAVOR=gpu -t renderfarm-worker:gpu .
# cpu: ASP.NET Core runtime image + the CPU ONNX Runtime package.
# gpu: NVIDIA CUDA 12 + cuDNN 9 runtime image (what Microsoft.ML.OnnxRuntime.Gpu 1.31 links against) + the .NET
#      runtime copied from the official image; run with Farm__ExecutionProvider=cuda on a host with the NVIDIA
#      container toolkit (driver >= the CUDA image's minimum).
# Models are never baked in: mount them (read-only) and name them with Farm__Models__<name>=<dir>.
ARG FLAVOR=cpu
ARG DOTNET_VERSION=10.0
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

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
# The .NET runtime's own dependencies (the official runtime-deps list, less ICU: the apps use invariant globalization).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libc6 libgcc-s1 libssl3t64 libstdc++6 tzdata zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=dotnet-runtime /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet
# Same non-root user as the official .NET images (uid/gid 1654), so volumes and securityContexts match both flavours.
ENV APP_UID=1654 \
    DOTNET_RUNNING_IN_CONTAINER=true \
    Farm__ExecutionProvider=cuda \
    CUDA_CACHE_PATH=/tmp/cuda-cache
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
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["dotnet", "RenderFarm.Worker.dll", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dotnet", "RenderFarm.Worker.dll"]
