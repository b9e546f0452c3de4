# syntax=docker/dockerfile:1
#
# Sluice image: the gateway and the model worker, static binaries on
# distroless (no shell, no package manager), running as a non-root user.
#
#   docker build -t sluice --build-arg VERSION=$(git describe --tags --always --dirty) \
#                          --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -p 8080:8080 sluice        # the demo config below
#
# The default config, /etc/sluice/gateway.yaml, is deploy/docker/gateway.yaml:
# plain HTTP on :8080, admin on :9901, and model workers the gateway spawns
# itself. Deployments mount their own config directory over /etc/sluice
# (deploy/nginx-compat/docker-compose.yml, deploy/kubernetes/). The same
# image runs the workers: --entrypoint /usr/local/bin/modelworker.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/ ./cmd/gateway ./cmd/modelworker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/modelworker /usr/local/bin/
COPY models/*.json /srv/sluice/models/
COPY deploy/docker/gateway.yaml /etc/sluice/gateway.yaml
# nonroot is uid 65532 in distroless. Mounted certificate keys must be
# readable by it (nginx read them as root before dropping privileges).
USER nonroot
WORKDIR /srv/sluice
# The default config's client and admin ports.
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/gateway", "healthcheck", "-config", "/etc/sluice/gateway.yaml"]
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run", "-config", "/etc/sluice/gateway.yaml"]
