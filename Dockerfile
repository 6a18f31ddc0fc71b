# raftmail in a container: the static binary on an empty image.
#
# Nothing can be pulled on the build machines, so there is no builder
# stage: build the static binary outside Docker first, then the image
# (make image does both):
#
#   CGO_ENABLED=0 go build -trimpath -ldflags=-s -o bin/raftmail-static ./cmd/raftmail
#   docker build -t raftmail:dev .
#
# The image runs as nobody (65534) with its data in /data (a volume). Ports
# inside a container are unprivileged (2525, 1143, ...): map 25, 143 and
# friends on the host or the load balancer. See docker-compose.yml and
# docs/operations.md "Containers".
FROM scratch
COPY --chown=65534:65534 deploy/docker/data/ /data/
COPY bin/raftmail-static /raftmail
USER 65534:65534
VOLUME ["/data"]
ENTRYPOINT ["/raftmail"]
CMD ["help"]
