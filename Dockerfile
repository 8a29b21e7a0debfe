FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY devices devices
COPY ingest ingest
COPY geofence geofence
COPY api api
COPY migrations migrations
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/fixgate fixgate \
    && mkdir -p /var/lib/fixgate && chown fixgate /var/lib/fixgate
ENV FIXGATE_MIGRATIONS_DIR=/app/migrations
USER fixgate
EXPOSE 5010 9108 8000
CMD ["fixgate", "gateway"]
