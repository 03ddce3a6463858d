# The Hodei Docker worker image, for machines that can pull base images from a registry.
# (Without a registry, `hodei image build` / `npm run image:build` builds the same layout offline.)
#
#   npm run build
#   docker build -f docker/worker.Dockerfile -t REGISTRY/hodei-worker:TAG .
#   docker push REGISTRY/hodei-worker:TAG
#
# Layout (other code depends on it exactly; see src/providers/agent-runtime.ts):
#   /opt/hodei/bin/node                    node from the node image
#   /opt/hodei/lib/<each lib ldd lists>    and /opt/hodei/lib/ld-linux-x86-64.so.2, the loader
#   /opt/hodei/agent.cjs, agent-main.cjs   dist/agent.cjs and the agent's bundle it runs
#   /opt/hodei/agent-snapshot.cjs          dist/agent-snapshot.cjs, the startup snapshot's entry
#   /opt/hodei/agent.blob                  the startup snapshot, built by this very node (a snapshot
#                                          is refused by any other); workers start from it
# Node runs through its own loader and libraries, so the final stage needs no glibc of its own.
# Build for linux/amd64: the loader's fixed name is the x86-64 one.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG BASE_IMAGE=busybox:stable

FROM ${NODE_IMAGE} AS runtime
# The slim image has no CA bundle; the worker's jobs need one for HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN set -eu; \
    node="$(readlink -f "$(command -v node)")"; \
    mkdir -p /opt/hodei/bin /opt/hodei/lib; \
    cp "$node" /opt/hodei/bin/node; \
    ldd "$node" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do \
      cp -L "$path" "/opt/hodei/lib/$name"; \
    done; \
    loader="$(ldd "$node" | awk '$1 ~ /^\/.*\/ld-linux[^\/]*\.so/ { print $1 }')"; \
    test -n "$loader"; \
    cp -L "$loader" /opt/hodei/lib/ld-linux-x86-64.so.2; \
    chmod 0755 /opt/hodei/bin/node /opt/hodei/lib/*; \
    /opt/hodei/lib/ld-linux-x86-64.so.2 --library-path /opt/hodei/lib /opt/hodei/bin/node -e 'process.versions.node'
COPY dist/agent.cjs dist/agent-main.cjs dist/agent-snapshot.cjs /opt/hodei/
# As src/providers/agent-runtime.ts builds it (scripts/agent-snapshot.cjs says why in two runs).
RUN set -eu; \
    cd /opt/hodei; \
    HODEI_SNAPSHOT_LAZY_KEYS="$(./bin/node agent-snapshot.cjs --lazy-keys)" \
      ./bin/node --snapshot-blob agent.blob --build-snapshot agent-snapshot.cjs; \
    chmod 0644 agent.cjs agent-main.cjs agent-snapshot.cjs agent.blob

FROM ${BASE_IMAGE}
COPY --from=runtime /opt/hodei /opt/hodei
COPY --from=runtime /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN mkdir -p /usr/bin /usr/local/bin /work /tmp \
 && ln -sf /bin/busybox /usr/bin/env \
 && chmod 1777 /tmp
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /work
CMD ["/opt/hodei/lib/ld-linux-x86-64.so.2", "--library-path", "/opt/hodei/lib", "/opt/hodei/bin/node", "--snapshot-blob", "/opt/hodei/agent.blob"]
