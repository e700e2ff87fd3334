# One image for every service of the shop and for the sandbox payment provider: `shop serve <name>`.
#
#   docker build -t swift-shop .
#   docker run --rm -p 3000:3000 -e DATABASE_URL=… swift-shop gateway
#
# Build stage: the official Swift image builds the release binary with the Swift standard library linked statically
# (and the project's cross-module optimisation). Runtime stage: Debian slim with only CA certificates added, a non-root
# user with a fixed uid, no package manager state, the binary alone.
#
# Where the official Swift image cannot be pulled (no registry here), build the binary on a Debian 12 host with the same
# flags and pass it in: `--build-arg BINARY_FROM=prebuilt` with a build context holding just `shop` (see
# scripts/test-deploy.sh). The runtime stage is the same either way.
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY_FROM=build

FROM ${SWIFT_IMAGE} AS build
WORKDIR /build
# The manifest first, so dependency resolution is cached apart from source changes.
COPY Package.swift ./
RUN mkdir -p Sources Tests && swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product shop --static-swift-stdlib -Xswiftc -cross-module-optimization \
    && mkdir -p /staging \
    && cp "$(swift build -c release --static-swift-stdlib -Xswiftc -cross-module-optimization --show-bin-path)/shop" /staging/shop \
    && strip /staging/shop

# A binary built outside (see above): the context is a folder holding `shop`.
FROM scratch AS prebuilt
COPY shop /staging/shop

FROM ${BINARY_FROM} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="swift-shop" \
      org.opencontainers.image.description="The shop's services and sandbox payment provider: shop serve <name>" \
      org.opencontainers.image.source="https://example.invalid/swift-shop" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# CA certificates for TLS to PostgreSQL, Redis, SMTP and OTLP endpoints; nothing else is installed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 10001 shop \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shop \
    && mkdir -p /data && chown 10001:10001 /data && chmod 0700 /data
COPY --from=binary /staging/shop /usr/local/bin/shop
USER 10001:10001
# Listen on every interface inside the container; data (SQLite files, generated keys) only under /data, the one
# writable path (a volume, or an emptyDir with a read-only root filesystem). Logs go to standard output as JSON lines.
ENV HOST=0.0.0.0 \
    DATA_DIR=/data
WORKDIR /data
EXPOSE 3000 3001 3002 3003 3004 3005 3006 3007
STOPSIGNAL SIGTERM
ENTRYPOINT ["shop", "serve"]
CMD ["gateway"]
