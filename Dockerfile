# syntax=docker/dockerfile:1
# llm-proxy: build with `docker build -t llm-proxy .`, run with
#   docker run --rm -p 8002:8002 -e INTERNAL_API_KEY=<secret> llm-proxy
# or use docker-compose.yml. Node 24 is the Active LTS line.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: compile TypeScript, then drop the dev dependencies -------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first, so the dependency layer is reused while only the sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# /docs serves the standalone bundle of the development dependency @scalar/api-reference, which holds all it
# needs (the package's ~290 dependencies are for its Vue components): keep its manifest and that one file
# through the prune, and nothing else of it.
RUN npm run build \
 && tar -cf /tmp/scalar.tar node_modules/@scalar/api-reference/package.json node_modules/@scalar/api-reference/dist/browser/standalone.js \
 && npm prune --omit=dev --no-audit --no-fund \
 && tar -xf /tmp/scalar.tar && rm /tmp/scalar.tar

# ---- runtime: compiled code and production dependencies only, as the unprivileged `node` user ------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8002
WORKDIR /app
# Owned by root, readable but not writable by `node`: the service cannot rewrite its own code.
# package.json is needed at run time: its "type": "module" makes dist/*.js ES modules.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8002
# No curl in slim images: node's own fetch. /health answers 200 while serving; once draining, new connections
# are refused, so a container that is shutting down reports unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8002) + '/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is the process that receives SIGTERM and drains in-flight requests for SHUTDOWN_GRACE_MS
# before it exits (give `docker stop -t` / stop_grace_period more than that).
STOPSIGNAL SIGTERM
# The node flags of `npm start` (see the README's Performance section): a young generation capped at 2 MB and no
# allocation-site pretenuring keep each scavenge short (the p99 at low concurrency) at no measurable throughput cost.
CMD ["node", "--max-semi-space-size=2", "--no-allocation-site-pretenuring", "dist/main.js"]
