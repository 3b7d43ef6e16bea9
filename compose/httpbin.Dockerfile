# lbscale/httpbin:local: go-httpbin (github.com/mccutchen/go-httpbin), at
# the version go.mod's tool directive pins, as an example of a user's own
# service behind the balancers. Built by scripts/images (alone:
# scripts/images httpbin), which stages build/httpbin/ as it does for the lbscale commands (see
# compose/Dockerfile): the static binary /httpbin, the symlink
# /entrypoint -> httpbin, /etc/passwd and /etc/group, an empty /tmp.
#
# It listens on 8080 (PORT or -port change it) and answers 200 on
# /status/200, its health path: a pool of it sets HEALTH_PATH (health_path
# in a pool file, as compose/pools/example.yml does) to /status/200, where
# the lbscale web server's is /healthz.
#
# No HEALTHCHECK: compose/Dockerfile's "<binary> healthcheck" is an lbscale
# command's own probe, go-httpbin has none, and FROM scratch has no curl.
# The balancers and the scaler probe the health path over HTTP; they do not
# read Docker's health status.
FROM scratch
ARG BIN=httpbin
ARG VERSION
LABEL org.opencontainers.image.title="lbscale ${BIN}" \
      org.opencontainers.image.source="lbscale" \
      org.opencontainers.image.version="${VERSION}"
COPY build/${BIN}/ /
# The same non-root user as the lbscale images.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/entrypoint"]
