# syntax=docker/dockerfile:1
#
# meshmedic container image: docker build -t meshmedic:0.1.0 .
#
# Base images are pinned by tag here. At release, pin both by digest as well
# (e.g. rust:1.95-slim-bookworm@sha256:..., gcr.io/distroless/cc-debian12:nonroot@sha256:...) so a
# rebuild of the same commit gets the same bytes; tags are mutable.

# ---- build -------------------------------------------------------------------------------------
# The toolchain matches the one the project is tested with; bookworm matches the runtime's glibc
# (distroless cc-debian12), so the dynamically linked binary runs there.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml/Cargo.lock change.
# Cargo checks every declared target exists, so the bench gets a stub too.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/analysis.rs \
 && cargo build --release --locked --bin meshmedic \
 && rm -rf src benches target/release/meshmedic* target/release/deps/meshmedic-* target/release/deps/libmeshmedic-* target/release/.fingerprint/meshmedic-*

# The crate itself. --locked: the build fails rather than resolve anything not in Cargo.lock.
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin meshmedic

# ---- runtime -----------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates and tzdata; no shell, no package manager.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="meshmedic" \
      org.opencontainers.image.description="Finds the Istio / ASM configurations that make a service mesh answer HTTP 503, and fixes them" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/meshmedic /meshmedic
# Numeric, so the kubelet can verify runAsNonRoot without resolving a user name.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/meshmedic"]
