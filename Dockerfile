# syntax=docker/dockerfile:1
# plantwatch as a container image (docs/operations.md, "In a container").
#
#   docker build -t plantwatch .
#   docker run --network host -v plantwatch-data:/var/lib/plantwatch plantwatch
#   docker run --network host plantwatch demo      # the simulated plant on 127.0.0.1:8080
#
# BACnet/IP needs the host's network: Who-Is and I-Am are UDP broadcasts and
# devices answer to the source address and port, which a bridge network's NAT
# rewrites. Run it with --network host (no -p: nothing is published, the
# service binds the host's ports directly: 8080/tcp API, 47808/udp BACnet).
#
# Targets (the last, `runtime`, is the default):
#   build     the official Rust image builds the release binary with cargo;
#   runtime   that binary on Debian slim, as the user plantwatch;
#   prebuilt  the same runtime with a binary built outside (CI: .ci/container
#             feeds it the binary the tests built, because CI reaches no image
#             registry for the Rust image):
#               docker build --target prebuilt --build-arg PLANTWATCH_BIN=target/debug/plantwatch -t plantwatch .

ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm

# ---- runtime-base: everything of the runtime but the binary
FROM debian:${DEBIAN_SUITE}-slim AS runtime-base
# curl for the HEALTHCHECK, nothing else: plantwatch links no C library
# beyond glibc and makes no outgoing TLS connection.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 plantwatch \
    && useradd --system --uid 10001 --gid plantwatch --home-dir /var/lib/plantwatch --shell /usr/sbin/nologin plantwatch \
    && mkdir -p /etc/plantwatch /var/lib/plantwatch \
    && chown plantwatch:plantwatch /var/lib/plantwatch
COPY deploy/plantwatch.toml /etc/plantwatch/plantwatch.toml
# The store: snapshots, history, audit log and API keys. `plantwatch demo`
# keeps its store below it too (data/demo/, relative to the working directory).
VOLUME ["/var/lib/plantwatch"]
WORKDIR /var/lib/plantwatch
USER plantwatch:plantwatch
# The API, /metrics, /health and /ready (server.listen), and BACnet/IP.
EXPOSE 8080/tcp 47808/udp
# SIGTERM drains as `plantwatch serve` does: stop taking requests, stop
# polling, write the last snapshots, exit 0. Give it time: docker stop -t 30.
STOPSIGNAL SIGTERM
# Liveness on loopback (the container shares the host's network). Another
# listen port: set PLANTWATCH_HEALTH_URL too, e.g. http://127.0.0.1:9090/health
# (https://... with -k for a self-signed certificate: the check is liveness,
# not trust).
ENV PLANTWATCH_HEALTH_URL=http://127.0.0.1:8080/health
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsSk --max-time 4 "$PLANTWATCH_HEALTH_URL" >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/plantwatch"]
CMD ["serve", "--config", "/etc/plantwatch/plantwatch.toml"]

# ---- prebuilt: the runtime with a binary built outside the image (CI)
FROM runtime-base AS prebuilt
ARG PLANTWATCH_BIN=target/release/plantwatch
COPY ${PLANTWATCH_BIN} /usr/local/bin/plantwatch
RUN ["/usr/local/bin/plantwatch", "--version"]

# ---- build: the release binary, built with cargo in the official Rust image
FROM rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS build
# The context has no .git (.dockerignore): name the commit for
# plantwatch_build_info with --build-arg PLANTWATCH_COMMIT=$(git rev-parse --short=12 HEAD).
ARG PLANTWATCH_COMMIT=unknown
WORKDIR /src
# What the binary is built from (config/ and docs/ are compiled in).
COPY Cargo.toml Cargo.lock build.rs ./
COPY actors actors
COPY src src
COPY config config
COPY docs docs
RUN PLANTWATCH_COMMIT="$PLANTWATCH_COMMIT" cargo build --release --locked --bin plantwatch \
    && cp target/release/plantwatch /plantwatch

# ---- runtime (default): the release binary on Debian slim
FROM runtime-base AS runtime
COPY --from=build /plantwatch /usr/local/bin/plantwatch
RUN ["/usr/local/bin/plantwatch", "--version"]
