# Oxidis in a container, used exactly like the official redis image:
#   docker build -t oxidis .
#   docker run -d -p 6379:6379 -v data:/data oxidis [--appendonly yes | /path/redis.conf]
#
# Build stage: the official Rust image, pinned to the toolchain the project is tested with.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# A static binary (glibc static-pie), stripped, so the runtime image needs nothing beside it.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu \
    && mkdir -p /out/bin /out/data \
    && cp target/x86_64-unknown-linux-gnu/release/oxidis /out/bin/oxidis \
    && ln -s oxidis /out/bin/redis-server \
    && ln -s oxidis /out/bin/docker-entrypoint

# Runtime stage: `scratch`, the binary alone (about 4 MB against redis:7-alpine's 40 MB). It
# needs no libraries, shell or users; the server runs as an unprivileged uid, and the
# entrypoint logic of the official image's script is in the binary (see docker_entrypoint in
# src/main.rs), so `docker run img redis-server ...` and `docker run img x.conf` work.
FROM scratch
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=999:999 /out/data /data
ENV PATH=/usr/local/bin
USER 999:999
WORKDIR /data
VOLUME /data
EXPOSE 6379
# SIGTERM makes the server save (when save points are set) and exit, well within `docker
# stop`'s 10 seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["docker-entrypoint"]
CMD ["oxidis"]
