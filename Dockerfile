# syntax=docker/dockerfile:1
# goldstream container image.
#   docker build -t goldstream:0.1.0 .
#   docker run --rm -p 9108:9108 -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION \
#     -e GOLDSTREAM_SOURCE__PATH=s3://bucket/silver -e GOLDSTREAM_SINK__GOLD_ROOT=s3://bucket/gold goldstream:0.1.0
# Storage credentials come only from the AWS_* environment, never from the image or config file.

# ---- builder: build the project wheel and install it (with its deps) into /opt/venv ----
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# README.md is required: pyproject.toml declares readme = "README.md".
COPY pyproject.toml README.md ./
COPY goldstream/ ./goldstream/
# Keep these commands simple: tests/test_deploy.py replays them in a fresh venv.
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl

# ---- runtime: only the venv, no compilers, non-root ----
FROM python:3.11-slim
LABEL org.opencontainers.image.title="goldstream" \
      org.opencontainers.image.description="Lightweight Delta Lake stream processor: Silver -> windowed aggregates -> Gold" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 goldstream \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/goldstream \
      --shell /usr/sbin/nologin goldstream
COPY --from=builder /opt/venv /opt/venv
# Default configuration; in Kubernetes the ConfigMap is mounted over /etc/goldstream.
COPY config.example.toml /etc/goldstream/config.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/goldstream
USER 10001:10001
EXPOSE 9108
# No curl in slim images: probe with the interpreter. urlopen raises (exit 1) on non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["goldstream"]
CMD ["run", "--config", "/etc/goldstream/config.toml"]
