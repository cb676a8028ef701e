# syntax=docker/dockerfile:1
# goldstream container image.
#   docker build -t goldstream:0.1.0 .
#   docker run --rm -p 9108:9108 -v "$PWD/config.toml:/etc/goldstream/config.toml:ro" \
#     -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION goldstream:0.1.0
# The image carries no configuration: mount one at /etc/goldstream/config.toml (in Kubernetes,
# the goldstream-config ConfigMap); without it the container exits 2 saying so.
# Storage credentials come only from the AWS_* environment (or an IAM role), never from the
# image or the config file.
#
# Reproducible: the base image is an exact tag (the Python the test suite runs on; no digest,
# so a re-pushed tag is not detected: add @sha256:... from your registry to pin it fully), and
# every Python dependency is an exact version with hashes from requirements.lock.

# ---- builder: install the locked dependencies, then the project wheel, into /opt/venv ----
FROM python:3.11.7-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock
# README.md is required: pyproject.toml declares readme = "README.md".
COPY pyproject.toml README.md ./
COPY goldstream/ ./goldstream/
# Keep these commands simple: tests/test_deploy.py replays them in a fresh venv.
# --no-deps: every dependency comes from the lock above, none is resolved here.
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check

# ---- runtime: only the venv, no compilers, non-root ----
FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="goldstream" \
      org.opencontainers.image.description="Lightweight Delta Lake stream processor: Silver -> windowed aggregates -> Gold" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 goldstream \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/goldstream \
      --shell /usr/sbin/nologin goldstream
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/goldstream
USER 10001:10001
EXPOSE 9108
# The probe reads the port from the same configuration (and GOLDSTREAM_SERVER__HTTP_PORT) as `run`.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["goldstream", "healthcheck", "--config", "/etc/goldstream/config.toml"]
ENTRYPOINT ["goldstream"]
CMD ["run", "--config", "/etc/goldstream/config.toml"]
