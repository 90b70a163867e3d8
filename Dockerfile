# syntax=docker/dockerfile:1
# The rancher-remap image: one static binary on distroless/static (no shell, no libc, CA
# certificates and /etc/passwd only), running as the distroless `nonroot` user (65532).
#
#   docker build -t REGISTRY/rancher-remap:0.1.0 \
#     --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg GIT_DATE=$(git log -1 --format=%cs) .
#
# (.dockerignore leaves .git out of the context: the two arguments record the commit, which
# `rancher-remap --version` prints; without them it reads `unknown`.)
#
# The binary is built by the same `make static` that CI checks (scripts/check-static-binary:
# static, under 30 MiB, starts without a writable filesystem, serves over TLS). The build
# stage compiles for its own architecture (amd64 or arm64).

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
ARG GIT_COMMIT=""
ARG GIT_DATE=""
COPY . .
RUN RANCHER_REMAP_GIT_COMMIT="$GIT_COMMIT" RANCHER_REMAP_GIT_DATE="$GIT_DATE" make static && cp target/*/dist/rancher-remap /rancher-remap

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /rancher-remap /usr/local/bin/rancher-remap
USER 65532:65532
# 8443: the webhook (TLS); 9090: /healthz, /readyz, /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/rancher-remap"]
CMD ["serve"]
