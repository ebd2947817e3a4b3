# syntax=docker/dockerfile:1
#
# maintenance-billing-broker image. One image, two roles:
#   worker (default):   docker run IMAGE                      -> broker run --config /etc/broker/config.yaml
#   Xero API emulator:  docker run IMAGE sandbox xero --host 0.0.0.0 --port 8765
#
# Process settings come from the environment (see broker/settings.py); the tenant configuration
# is a YAML file, mounted at /etc/broker/config.yaml (docker-compose.yml mounts
# deploy/config.compose.yaml there). Secrets are environment variables named by that file.

# --------------------------------------------------------------------------- build stage
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# Project metadata first (pyproject's `readme` must exist for the build), then the packages.
COPY pyproject.toml README.md constraints.txt ./
COPY broker/ ./broker/
COPY connectors/ ./connectors/
RUN pip install --upgrade pip setuptools wheel \
 && pip install -c constraints.txt ".[rocksdb,report]"   # BROKER_STORE=rocksdb; `broker report economics --format html`

# --------------------------------------------------------------------------- runtime stage
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="maintenance-billing-broker" \
      org.opencontainers.image.description="Event-driven broker: maintenance work orders in, invoices out in the tenant's billing system." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    BROKER_CONFIG=/etc/broker/config.yaml \
    BROKER_DATA_DIR=/var/lib/broker \
    BROKER_METRICS_HOST=0.0.0.0 \
    BROKER_METRICS_PORT=9108 \
    BROKER_LOG_LEVEL=INFO

# Unprivileged user with a fixed uid/gid (so mounted volumes can be chowned predictably).
RUN groupadd --system --gid 10001 broker \
 && useradd --system --uid 10001 --gid broker --home-dir /var/lib/broker --no-create-home \
            --shell /usr/sbin/nologin broker \
 && install -d -o broker -g broker -m 0750 /var/lib/broker \
 && install -d -o root -g broker -m 0755 /etc/broker

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# JSON schemas of the events/invoices (not part of the installed packages).
COPY schemas/ ./schemas/

# Default tenant configuration = the packaged demo config, when the package ships one;
# mount your own file over /etc/broker/config.yaml.
RUN python -c "import pathlib, shutil, broker; src = pathlib.Path(broker.__file__).parent / 'examples' / 'config.yaml'; src.is_file() and shutil.copyfile(src, '/etc/broker/config.yaml')" \
 && broker --help > /dev/null

USER broker:broker

# Prometheus /metrics, /healthz and /readyz (BROKER_METRICS_PORT).
EXPOSE 9108
VOLUME ["/var/lib/broker"]

# slim has no curl: probe /readyz with the standard library (503 -> HTTPError -> unhealthy; the body
# names what is not ready: Kafka, partitions, tables, tenants). BROKER_METRICS_PORT=0 disables the
# endpoint, and then there is nothing to probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BROKER_METRICS_PORT') or '9108'; sys.exit(0) if port == '0' else urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).read()"]

ENTRYPOINT ["broker"]
CMD ["run", "--config", "/etc/broker/config.yaml"]
