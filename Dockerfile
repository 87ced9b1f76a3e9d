# syntax=docker/dockerfile:1
# sibyl gRPC prediction server. Build from the repo root:  docker build -t sibyl .
# Stage 1 has compilers and builds every wheel; stage 2 installs them on a slim base without compilers.

FROM python:3.11-slim AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# build-essential lives only in this throwaway stage, so its exact version never reaches the image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sibyl ./sibyl
# The exact set of wheels built (sibyl and every dependency) becomes the install list of stage 2.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[s3]" \
    && find /wheels -name "*.whl" | sort > /wheels/requirements.txt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIBYL_SERVER__HOST=0.0.0.0 \
    SIBYL_SERVER__PORT=50051 \
    SIBYL_METRICS__HOST=0.0.0.0 \
    SIBYL_METRICS__PORT=9100 \
    SIBYL_HTTP__PORT=8080 \
    SIBYL_PREDLOG__PATH=/var/lib/sibyl/predictions.jsonl \
    SIBYL_PREDLOG__SPOOL_DIR=/var/lib/sibyl/spool
# Wheels come in through a bind mount, so they never become a layer of the final image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --requirement /wheels/requirements.txt \
    && groupadd --system --gid 10001 sibyl \
    && useradd --system --uid 10001 --gid sibyl --home-dir /var/lib/sibyl --create-home --shell /usr/sbin/nologin sibyl
WORKDIR /var/lib/sibyl
USER 10001:10001
EXPOSE 50051 9100 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-m", "sibyl.process.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["sibyl", "serve"]
