# gatehouse container image.
#   docker build -t gatehouse:latest .
#   docker run --rm -p 6188:6188 -p 127.0.0.1:9091:9091 gatehouse:latest   # admin: no auth
# The config inside is deploy/docker/conf.yaml (the shipped one, admin on
# 0.0.0.0) plus routes/; mount your own over /etc/gatehouse to change it.
# `docker stop` sends SIGTERM (the gateway drains) but kills after 10 s, less
# than grace_period_seconds + graceful_shutdown_timeout_seconds (10 + 5):
# use `docker stop -t 20` (compose: stop_grace_period: 20s).

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build
# The same build packages as .ci/run: boring-sys builds BoringSSL from source
# with cmake and the image's g++, and generates its bindings with libclang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the binary is built from: tests/ and benches/ are not needed.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked \
 && install -m 0755 target/release/gatehouse /usr/local/bin/gatehouse

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to upstreams, JWKS, OAuth and ACME over https.
# BoringSSL is linked statically: no libssl is needed at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The system bundle, for Pingora's upstream TLS and rustls-native-certs.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/etc/ssl/certs
# A fixed uid/gid so Kubernetes (runAsUser: 10001) and host volume
# permissions can refer to it.
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid gatehouse --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin gatehouse
COPY --from=build /usr/local/bin/gatehouse /usr/local/bin/gatehouse
COPY deploy/docker/conf.yaml /etc/gatehouse/conf.yaml
COPY routes/ /etc/gatehouse/routes/
# 6188: proxy. 9091: admin (/health/*, /metrics, /status).
EXPOSE 6188 9091
USER gatehouse
# The slim image has no curl, and installing it (plus its libraries) only for
# the probe grows the image and its CVE surface. bash is always there and its
# /dev/tcp is enough for one GET: pass when the status line says 200.
# Kubernetes ignores HEALTHCHECK and uses the Deployment's probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9091 && printf 'GET /health/live HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["gatehouse"]
CMD ["run", "-c", "/etc/gatehouse/conf.yaml"]
