# Switchyard: multi-stage build, small non-root runtime image.
# Configure with environment variables (an .env via `docker run --env-file` or
# compose `env_file`) or a mounted config file (`--config /etc/switchyard/config.json`).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Every workspace member's manifest must be present for cargo to resolve the workspace.
COPY Cargo.toml Cargo.lock ./
COPY actors ./actors
COPY bench ./bench
COPY src ./src
RUN cargo build --release --locked --bin switchyard \
    && strip target/release/switchyard

FROM debian:bookworm-slim
# curl serves the HEALTHCHECK; ca-certificates for outbound TLS (Redis, webhooks).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin switchyard \
    && mkdir -p /var/run/sockudo \
    && chown switchyard:switchyard /var/run/sockudo
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
USER 10001:10001
WORKDIR /app
ENV HOST=0.0.0.0 PORT=6001 METRICS_HOST=0.0.0.0 METRICS_PORT=9601 LOG_OUTPUT_FORMAT=json LOG_COLORS_ENABLED=false
EXPOSE 6001 9601
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["sh", "-c", "curl -fsS \"http://127.0.0.1:${PORT}/up\" || exit 1"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
