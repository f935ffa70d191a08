# syntax=docker/dockerfile:1
#
# The demo server's image, as deploy/kubernetes/dbservice.yaml runs it:
#
#     docker build -t registry.example.com/dbservice:0.1.0 .    # at the repository's root
#
# Tag a release by the demo's version (demo/Cargo.toml), which the manifest names; tag a build
# of main by its commit (`git rev-parse --short HEAD`), never by a released version. Building
# on an arm64 machine for amd64 nodes: add `--platform linux/amd64`. The image
# holds one binary, `dbservice`, on PATH: the server by default (CMD), `dbservice migrate` for
# the init container. It runs as the numeric user 10001:10001 that the manifest's
# securityContext names, and writes nothing outside /tmp, so it runs with
# readOnlyRootFilesystem. See CONNECTION_POOLING.md, "Deploying on Kubernetes".

ARG RUST_VERSION=1.95

# Both stages are Debian 12 (bookworm): the binary links against the builder's glibc, so the
# runtime's must be the same release or newer.
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# rustls (no OpenSSL) and the bundled SQLite need only the C compiler the slim image has.
# The caches keep the registry and the target directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dbservice-demo --bin dbservice \
    && install -D -m 0755 target/release/dbservice /out/dbservice

# glibc, libgcc and CA certificates, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/dbservice /usr/local/bin/dbservice
# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 10001:10001
# A container listens on every interface; production refuses to start without DATABASE_URL
# (exit 2 naming it) instead of serving from a throwaway SQLite file in a read-only image.
ENV HOST=0.0.0.0 \
    PORT=8080 \
    APP_ENV=production
# 8080: the API and the probes; 9090: /metrics and /health/db when
# DBSERVICE_MANAGEMENT_PORT=9090 (the manifest sets it).
EXPOSE 8080 9090
# CMD, not ENTRYPOINT: `command: ["dbservice", "migrate"]` in the manifest replaces it whole.
CMD ["dbservice"]
