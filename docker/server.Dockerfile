# The control plane's image, for running Hodei in a cluster (deploy/kubernetes/hodei.yaml).
#   docker build -f docker/server.Dockerfile -t REGISTRY/hodei:TAG .
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY . .
RUN npm ci && npm prune --omit=dev
# glibc's malloc in transparent huge pages: log ingest spends much of its time in page faults
# otherwise (docs/operations.md, "Memory and log throughput").
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
ENTRYPOINT ["node", "/app/bin/hodei.js"]
CMD ["server"]
