# syntax=docker/dockerfile:1
# dcnserve image. Build: `docker compose build` (or `docker build -t dcnserve .`).
# Stage 1 builds the torch extension and the ONNX Runtime op libraries with the project's own
# Makefile for the data-centre GPU architectures; stage 2 is the CUDA runtime with the service.
# The defaults make the GPU image; docker-compose.cpu.yml sets the build args for a CPU image
# from a plain Debian/Ubuntu base (WITH_CUDA=0, ONNX Runtime's CPU package).
ARG BUILD_IMAGE=nvidia/cuda:13.0.0-devel-ubuntu24.04
ARG RUNTIME_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

FROM ${BUILD_IMAGE} AS build
ARG WITH_CUDA=1
ARG ORT_PACKAGE=onnxruntime-gpu==1.31.1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# debian-archive-keyring: onnx_plugins/fetch_ort_headers.sh reads ONNX Runtime's headers from
# Debian's libonnxruntime-dev with a private apt state.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev g++ make ca-certificates debian-archive-keyring \
    && rm -rf /var/lib/apt/lists/*
ENV CUDA_HOME=/usr/local/cuda \
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0" \
    PIP_NO_CACHE_DIR=1 \
    PYTHON=python3
WORKDIR /opt/dcnserve
# Dependencies first: this layer (torch and friends) is rebuilt only when pyproject.toml changes.
# onnxruntime-gpu pinned to a CUDA 13 build (earlier releases link CUDA 12, and their CUDA EP
# would fail to load next to our CUDA 13 libraries).
COPY pyproject.toml Makefile ./
# The project depends on `onnxruntime` (CPU); the GPU image swaps in ORT_PACKAGE.
RUN make .venv/.deps \
    && if [ "$ORT_PACKAGE" != onnxruntime ]; then \
        .venv/bin/pip uninstall -y onnxruntime && .venv/bin/pip install "$ORT_PACKAGE"; fi
# ONNX Runtime headers (changes only with the fetch script).
COPY onnx_plugins/fetch_ort_headers.sh onnx_plugins/
RUN make third_party/onnxruntime/onnxruntime_cxx_api.h
# The sources the build reads, then the build: model/_C (CPU, + CUDA), libdcn_ort.so
# (+ libdcn_ort_cuda.so). The venv on PATH gives torch's extension builder its ninja (parallel).
ENV PATH=/opt/dcnserve/.venv/bin:$PATH
COPY setup.py ./
COPY csrc csrc
COPY model model
COPY onnx_plugins onnx_plugins
RUN touch .venv/.deps third_party/onnxruntime/onnxruntime_cxx_api.h \
    && make build WITH_CUDA="$WITH_CUDA" MAX_JOBS="$(nproc)" \
    && rm -rf build .venv/requirements.txt

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends python3 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 dcn \
    && mkdir -p /var/cache/dcnserve /models /checkpoints \
    && chown dcn /var/cache/dcnserve /models
WORKDIR /opt/dcnserve
# The virtual environment is its own layer: unchanged code leaves it cached, and a code change
# does not copy torch again.
COPY --from=build /opt/dcnserve/.venv /opt/dcnserve/.venv
COPY --from=build /opt/dcnserve/model /opt/dcnserve/model
COPY --from=build /opt/dcnserve/onnx_plugins /opt/dcnserve/onnx_plugins
# The service is not compiled: editing it rebuilds nothing.
COPY service /opt/dcnserve/service
ENV PATH=/opt/dcnserve/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DCN_HOST=0.0.0.0 \
    DCN_PORT=8000 \
    DCN_DEVICE=auto \
    DCN_CACHE_DIR=/var/cache/dcnserve
USER 10001
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DCN_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["python", "-m", "service"]
