# lbscale/redis:local: Debian's redis-server in a FROM-scratch image, for
# machines that cannot pull redis:7-alpine. scripts/redis-image stages
# build/redis/rootfs (the two binaries, every shared library ldd lists, the
# dynamic loader, /etc/passwd, /etc/group, an empty /data) and builds this
# with build/redis as the context.
FROM scratch
COPY rootfs/ /
COPY --chown=999:999 data/ /data/
ENV PATH=/usr/bin
WORKDIR /data
USER 999:999
EXPOSE 6379
# A cache for counters and leases: no persistence, reachable from the
# compose network (which is the protection; nothing is published).
CMD ["/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/data"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 CMD ["/usr/bin/redis-cli", "ping"]
