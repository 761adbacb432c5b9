# The image every Kubeflow V2 component runs in: the locked dependencies and this package.
# Debian 13 has glibc 2.41, so the manylinux_2_39 wheels of the lock load without the private
# runtime that scripts/setup.sh adds on Debian 12.
#   docker build -t REGISTRY/memn2n:TAG .
#   memn2n pipeline compile --engine kubeflow-v2 --image REGISTRY/memn2n:TAG --output spec.json \
#       --babi-dir gs://BUCKET/babi --pipeline-root gs://BUCKET/root
FROM python:3.11-slim-trixie

WORKDIR /memn2n
COPY requirements.lock ./
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv pip install --system --no-cache --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY model model
COPY pipeline pipeline
COPY serving serving
COPY memn2n_cli memn2n_cli
RUN uv pip install --system --no-cache --no-deps .
