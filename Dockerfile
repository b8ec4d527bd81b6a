# qpsbench as a container image, for running shards on Kubernetes (`qpsbench k8s-manifest`).
#
#   docker build -t registry.example.com/qpsbench:0.1 .
#   docker push registry.example.com/qpsbench:0.1
#
# Two stages: a release build on the Rust image, then a slim Debian runtime holding only the
# binary, the CA certificates that https:// endpoints are verified against, and a non-root user
# (uid 10001, the runAsUser of the generated manifests). io_uring: runtimes whose default
# seccomp profile blocks it make qpsbench fall back to epoll, and metadata.json says which ran.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# The dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin qpsbench \
    && rm -rf src
COPY data data
COPY src src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin qpsbench \
    && strip target/release/qpsbench

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/qpsbench qpsbench
COPY --from=build /src/target/release/qpsbench /usr/local/bin/qpsbench
USER 10001:10001
WORKDIR /home/qpsbench
ENTRYPOINT ["qpsbench"]
CMD ["--help"]
