# One image for the API, the xDS replicas and the demo upstreams; docker-compose.yaml picks the
# command. Build: docker build -t envoyage .
FROM node:26-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json tsconfig.json .npmrc ./
COPY shared/proto/package.json shared/proto/
COPY shared/registry/package.json shared/registry/
COPY shared/test-support/package.json shared/test-support/
COPY services/api/package.json services/api/
COPY services/xds/package.json services/xds/
COPY integration/package.json integration/
COPY bench/package.json bench/
RUN npm ci --no-audit --no-fund
COPY shared shared
COPY services services
COPY integration integration
COPY bench bench
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:26-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/shared shared
COPY --from=build /src/services services
USER node
# Overridden per service in docker-compose.yaml.
CMD ["node", "services/api/dist/src/main.js"]
