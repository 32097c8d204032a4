# syntax=docker/dockerfile:1
# RenderFarm coordinator: the gRPC front end (clients and workers), stateless, state in Redis.
#   docker build -f deploy/docker/coordinator.Dockerfile -t renderfarm-coordinator .
# Results go to Farm__Storage (mount a volume there); listens on 5000, HTTP/2 only (gRPC, gRPC health, /healthz).
ARG DOTNET_VERSION=10.0

# ---- build: the same commands scripts/validate-deploy.sh runs in CI ----
FROM mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION} AS build
ARG TARGETARCH
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
WORKDIR /src
# npm builds the dashboard's page files at publish (they are embedded in the app): Node from the distribution's packages.
RUN command -v npm >/dev/null || (apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*)
COPY . .
RUN --mount=type=cache,id=nuget,target=/root/.nuget/packages \
    dotnet restore src/Coordinator/RenderFarm.Coordinator.csproj -a "$TARGETARCH"
RUN --mount=type=cache,id=nuget,target=/root/.nuget/packages \
    dotnet publish src/Coordinator/RenderFarm.Coordinator.csproj -c Release -a "$TARGETARCH" --self-contained false --no-restore -p:UseAppHost=false -o /app

# ---- runtime: ASP.NET Core on Ubuntu, non-root, nothing added ----
# The native libraries the app publishes need nothing beyond the image: Skia's (SkiaSharp's NoDependencies variant,
# which decodes uploaded images) glibc and libstdc++ only. scripts/validate-deploy.sh checks their NEEDED entries.
FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS final
WORKDIR /app
COPY --from=build --chown=root:root /app ./
RUN mkdir -p /data/results && chown "$APP_UID:$APP_UID" /data/results
# The gRPC endpoint comes from Kestrel__Endpoints__Grpc__Url; ASPNETCORE_HTTP_PORTS (8080 in the official image) is
# cleared so nothing else binds.
ENV Kestrel__Endpoints__Grpc__Url=http://0.0.0.0:5000 \
    ASPNETCORE_HTTP_PORTS= \
    Farm__Storage=/data/results
VOLUME ["/data/results"]
EXPOSE 5000
USER $APP_UID
# The app asks its own gRPC health service (grpc.health.v1, service "": Redis included) on the endpoint it listens on.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["dotnet", "RenderFarm.Coordinator.dll", "health"]
ENTRYPOINT ["dotnet", "RenderFarm.Coordinator.dll"]
