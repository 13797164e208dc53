# Switchyard: multi-stage build, small non-root runtime image.
# Configure with environment variables (an .env via `docker run --env-file` or compose
# `env_file`) or a config file. Give the file by mounting it at /app/config/config.json (or
# .toml; the default location, WORKDIR is /app) or with CONFIG_FILE=/path — not with
# `--config` after the image name: the HEALTHCHECK runs `switchyard --health` as a separate
# process with the container's environment and working directory only, so it would not see
# that flag and would probe the defaults.
# tests/docker.rs checks this file against the workspace and the binary (no Docker needed).

FROM rust:1-slim-bookworm AS build
WORKDIR /src

# 1. Dependencies, in a layer of their own that stays cached until a manifest or Cargo.lock
#    changes. Cargo needs the manifest of every workspace member ([workspace] members in
#    Cargo.toml: ".", "actors", "bench"; "fuzz" is excluded) and a source file for each of
#    their targets, so the members get stub sources here. Afterwards the stub artefacts of
#    the workspace's own crates are deleted: the real sources COPYed below keep their mtimes
#    from the build context, which can be older than this build, and cargo would otherwise
#    take the stubs' fingerprints as fresh and ship an empty `main`.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/
COPY bench/Cargo.toml bench/
RUN mkdir -p src actors/src bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs actors/src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && cargo build --release --locked --bin switchyard \
    && rm -rf target/release/.fingerprint/switchyard-* \
              target/release/deps/*switchyard* \
              target/release/switchyard*

# 2. The server's own sources. The bench crate keeps its stub: the image does not build the
#    load generator, and editing it does not invalidate this stage.
COPY actors/src ./actors/src
COPY src ./src
RUN cargo build --release --locked --bin switchyard \
    && strip target/release/switchyard

FROM debian:bookworm-slim
# ca-certificates for outbound TLS (Redis, webhooks). No curl: the HEALTHCHECK is the binary.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin switchyard \
    && mkdir -p /var/run/sockudo \
    && chown switchyard:switchyard /var/run/sockudo
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
USER 10001:10001
WORKDIR /app
# METRICS_HOST=0.0.0.0 on purpose, although .env.example says 127.0.0.1: inside a container
# 127.0.0.1 is the container's own loopback, which a published port cannot reach. The image
# listens on every interface of the container, and who can reach 9601 is decided where it is
# published: `-p 127.0.0.1:9601:9601` (the host's loopback only) or an internal network, never
# a bare `-p 9601:9601` on a public host. Values given at run time (`docker run -e` /
# `--env-file`, compose `environment` / `env_file`) override these ENV lines, so an .env
# copied from .env.example turns metrics container-local: add `-e METRICS_HOST=0.0.0.0`
# (`-e` wins over `--env-file`) or drop METRICS_HOST from that file; docker-compose.yml sets it.
ENV HOST=0.0.0.0 PORT=6001 METRICS_HOST=0.0.0.0 METRICS_PORT=9601 LOG_OUTPUT_FORMAT=json LOG_COLORS_ENABLED=false
EXPOSE 6001 9601
# `switchyard --health` reads the same configuration as the server (.env in /app, the
# environment, the config file) and asks its listener for GET /up: HTTP on HOST:PORT (a
# wildcard HOST on loopback), HTTPS with SSL_ENABLED=true, the Unix socket with
# UNIX_SOCKET_ENABLED=true. Exit 0 on 200, else 1 with the reason (`docker inspect`).
# It gives up after HEALTH_CHECK_TIMEOUT_MS (2000 ms), inside --timeout.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/switchyard", "--health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
