# igserve in a container: a build stage with the compilers and -dev packages, and a small
# runtime stage with only the shared libraries the binary links.
#
#   docker build -t igserve .
#   docker run --rm -p 8080:8080 igserve                                   # demo model
#   docker run --rm -p 8080:8080 -v igserve-weights:/weights \
#       -e IGSERVE_FETCH_WEIGHTS=1 igserve                                  # ImageNet ResNet-50
#
# See deploy/docker-entrypoint.sh for how the model is chosen.

FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential meson ninja-build pkg-config \
        libmicrohttpd-dev libcjson-dev libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev \
        libopenblas-dev libdnnl-dev libssl-dev libsnappy-dev zlib1g-dev check libcurl4-openssl-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# python3 runs tools/embed.py, which compiles openapi.yaml into the binary; Check and libcurl
# are needed only because meson configures the tests too (they are not built here).
# Portable x86-64 code (-Dnative=false): the image may run on another CPU than it was built on.
RUN meson setup /build --buildtype=release -Dnative=false --prefix=/usr/local \
 && meson compile -C /build igserve \
 && meson install -C /build --no-rebuild --destdir /out

FROM debian:12-slim
# The package list is one file, which scripts/container-check proves without Docker.
COPY deploy/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        $(grep -v '^ *#' /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
RUN useradd --system --uid 10001 --user-group --home-dir /opt/igserve --shell /usr/sbin/nologin igserve \
 && mkdir -p /weights \
 && chown igserve:igserve /weights
COPY --from=build /out/usr/local/bin/igserve /usr/local/bin/igserve
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# The working directory mirrors the repository, so the binary's relative defaults
# (models/demo/..., weights/...) mean the same here.
WORKDIR /opt/igserve
COPY models/demo models/demo
COPY scripts/fetch-weights scripts/weights.sha256 scripts/
COPY openapi.yaml openapi.yaml

ENV IGSERVE_HOST=0.0.0.0 \
    IGSERVE_PORT=8080 \
    IGSERVE_WEIGHTS_DIR=/weights
VOLUME /weights
USER igserve
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${IGSERVE_PORT}/healthz" || exit 1
# igserve drains on SIGTERM: /readyz turns 503, requests in flight finish, then it exits.
# Give it time: docker stop -t 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["serve"]
