# Stand-in for quay.io/coreos/etcd: `etcd` on PATH, data under /etcd-data (Debian's etcd 3.4).
FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null \
 && rm -rf /var/lib/apt/lists/* && ln -s /usr/bin/etcd /usr/local/bin/etcd
ENV ETCD_UNSUPPORTED_ARCH=
ENTRYPOINT []
CMD ["/usr/local/bin/etcd"]
