# linkspeed container: build on Debian 12, run on debian:12-slim as a non-root user.
# The build stage uses the same install and build scripts as the README and CI.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/ scripts/
RUN scripts/install-deps.sh build
COPY . .
RUN scripts/build.sh build -DLINKSPEED_TESTS=OFF && strip build/linkspeed

FROM debian:12-slim
COPY --from=build /src/scripts/install-deps.sh /usr/local/lib/linkspeed/install-deps.sh
RUN /usr/local/lib/linkspeed/install-deps.sh runtime && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin linkspeed
COPY --from=build /src/build/linkspeed /usr/local/bin/linkspeed
USER linkspeed
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=6s --start-period=5s --retries=3 \
    CMD ["linkspeed", "healthcheck", "http://127.0.0.1:8080"]
ENTRYPOINT ["linkspeed"]
CMD ["serve"]
