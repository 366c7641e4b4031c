# syntax=docker/dockerfile:1
#
# The single `kyc` binary (produce | work | report | migrate | simulate | run).
#
#   docker build -t kyc:dev .
#   docker run --rm kyc:dev --help
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src

# No database is needed during the build: kyc uses no compile-time checked queries, and the
# migrations are embedded by kyc-store's build script.
ENV CARGO_TERM_COLOR=never

COPY . .

# Dependency caching: the cargo registry, git checkouts and target/ live in
# BuildKit cache mounts, so a rebuild after a source-only change recompiles
# just the workspace crates, not every dependency. (Chosen over the "dummy
# main.rs" layer trick, which breaks as soon as the crate layout changes.)
# Cache mounts are not part of the image, hence the copy to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin kyc \
 && install -D -m 0755 target/release/kyc /out/kyc

# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime

LABEL org.opencontainers.image.title="kyc" \
      org.opencontainers.image.description="kyc-batch: CSV -> RabbitMQ -> vendor KYC APIs -> PostgreSQL, with reports"

# CA roots for TLS to the vendor APIs, object storage and managed services.
# Nothing else: the binary must not need OpenSSL (use rustls).
# Unpinned on purpose: CA roots should be the newest, and a pinned Debian
# version disappears from the mirror at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Fixed uid/gid 10001, matching runAsUser/runAsGroup in k8s/.
RUN groupadd --system --gid 10001 kyc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin kyc

# Owned by root, so the running user cannot replace it.
COPY --from=builder /out/kyc /usr/local/bin/kyc

# Numeric, so Kubernetes can verify runAsNonRoot without resolving a name.
USER 10001:10001

# /healthz, /readyz and /metrics (KYC_HTTP_LISTEN, 0.0.0.0:9090 in k8s/).
EXPOSE 9090

# kyc runs as PID 1 (no init): it must handle SIGTERM itself.
ENTRYPOINT ["kyc"]
CMD ["--help"]
