# The pages' map, drawing and IndexedDB libraries from the npm registry, pinned by
# web/package-lock.json.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
    && mkdir -p /vendor/leaflet/images \
    && cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css \
          node_modules/leaflet/LICENSE /vendor/leaflet/ \
    && cp node_modules/leaflet/dist/images/*.png /vendor/leaflet/images/ \
    && mkdir -p /vendor/geoman \
    && cp node_modules/@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.min.js \
          node_modules/@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.css \
          node_modules/@geoman-io/leaflet-geoman-free/LICENSE /vendor/geoman/ \
    && mkdir -p /vendor/idb \
    && cp node_modules/idb/build/index.js node_modules/idb/LICENSE /vendor/idb/

FROM python:3.11-slim-bookworm
WORKDIR /app
# The product only: developer tooling (devtools/) stays out of the image.
COPY pyproject.toml README.md requirements.lock ./
COPY gateway gateway
COPY devices devices
COPY ingest ingest
COPY geofence geofence
COPY api api
COPY --from=web /vendor api/static/vendor
COPY migrations migrations
# Exactly the locked versions of the runtime dependencies (the lock's pins as constraints).
RUN sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' requirements.lock > /tmp/constraints.txt \
    && pip install --no-cache-dir -c /tmp/constraints.txt . \
    && useradd --system --home /var/lib/fixgate fixgate \
    && mkdir -p /var/lib/fixgate && chown fixgate /var/lib/fixgate
USER fixgate
EXPOSE 5010 9108 8000
CMD ["fixgate", "gateway"]
