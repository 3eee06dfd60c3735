# syntax=docker/dockerfile:1
# The same steps run in CI without Docker: scripts/image-build-check.sh.

FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24.22.3-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json LICENSE ./
COPY sql ./sql
# The node image's unprivileged user.
USER node
EXPOSE 9464
# Reads the same config as the bridge, so it follows http.port (and PGQ_BRIDGE_HTTP_PORT).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["node", "dist/main.js", "health", "--config", "/etc/pgq-bridge/config.json"]
# node handles SIGTERM itself (graceful drain), so it can run as PID 1 without an init.
ENTRYPOINT ["node", "dist/main.js"]
CMD ["run", "--config", "/etc/pgq-bridge/config.json"]
