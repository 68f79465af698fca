# syntax=docker/dockerfile:1
# dcnserve image. Build: `docker compose build` (tags dcnserve:latest) or `docker build -t dcnserve .`.
# The defaults make the GPU image on a plain Debian base, no nvidia/cuda image: the CUDA kernels are
# compiled with the CUDA toolchain from PyPI (nvidia-cuda-nvcc and friends, build stage only), the
# CUDA libraries come with torch's wheels, ONNX Runtime is onnxruntime-gpu, and the NVIDIA Container
# Toolkit brings the driver at run time. docker-compose.cpu.yml sets the build args of the CPU image
# (WITH_CUDA=0, ONNX Runtime's CPU package). Stages: deps (the venv, the same layers for both
# variants), build (the compiled libraries), runtime.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# debian-archive-keyring: onnx_plugins/fetch_ort_headers.sh reads ONNX Runtime's headers from
# Debian's libonnxruntime-dev with a private apt state.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev g++ make ca-certificates debian-archive-keyring \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PYTHON=python3
WORKDIR /opt/dcnserve
# Dependencies first: this layer (torch and friends, ~6.5 GB) is rebuilt only when pyproject.toml or
# the Makefile changes, and is the same for the GPU and the CPU image (no build arg before it).
COPY pyproject.toml Makefile ./
RUN make .venv/.deps && rm .venv/requirements.txt
# ONNX Runtime headers (changes only with the fetch script).
COPY onnx_plugins/fetch_ort_headers.sh onnx_plugins/
RUN make third_party/onnxruntime/onnxruntime_cxx_api.h

FROM deps AS build
ARG WITH_CUDA=1
# The full list by default; CI builds a short one (deploy/test_image.sh, DCN_CUDA_ARCHS).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"
# The CUDA 13.0 compiler (torch's CUDA runtime is 13.0), laid out as a CUDA_HOME: nvcc.profile
# looks for targets/x86_64-linux, torch's extension builder for lib64 and an unversioned libcudart.
ARG CUDA_TOOLCHAIN="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96"
ENV CUDA_HOME=/opt/cuda/nvidia/cu13 \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    PATH=/opt/dcnserve/.venv/bin:$PATH
# hadolint ignore=DL3013,SC2086
RUN if [ "$WITH_CUDA" = 1 ]; then \
        pip install --quiet --target /opt/cuda $CUDA_TOOLCHAIN \
        && mkdir -p "$CUDA_HOME/targets" && ln -s .. "$CUDA_HOME/targets/x86_64-linux" \
        && ln -s lib "$CUDA_HOME/lib64" && ln -s libcudart.so.13 "$CUDA_HOME/lib/libcudart.so"; fi
# The sources the build reads, then the build: model/_C (CPU, + CUDA), libdcn_ort.so
# (+ libdcn_ort_cuda.so). The venv on PATH gives torch's extension builder its ninja (parallel).
COPY setup.py ./
COPY csrc csrc
COPY model model
COPY onnx_plugins onnx_plugins
RUN touch .venv/.deps third_party/onnxruntime/onnxruntime_cxx_api.h \
    && make build WITH_CUDA="$WITH_CUDA" MAX_JOBS="$(nproc)" \
    && rm -rf build

FROM ${BASE_IMAGE} AS runtime
# make: for `make gpu-check` inside the image (docs/gpu.md); ca-certificates: pip, below.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 libgomp1 make ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 dcn \
    && mkdir -p /var/cache/dcnserve /models /checkpoints \
    && chown dcn /var/cache/dcnserve /models
WORKDIR /opt/dcnserve
# The virtual environment is its own layer, the same for both variants: unchanged dependencies
# leave it cached, and a code change does not copy torch again.
COPY --from=deps /opt/dcnserve/.venv /opt/dcnserve/.venv
# The GPU image swaps in ORT_PACKAGE, pinned to a CUDA 13 build (earlier releases link CUDA 12,
# and their CUDA EP would fail to load next to torch's CUDA 13 libraries), and adds
# compute-sanitizer from PyPI for `make gpu-check` (docs/gpu.md).
ARG ORT_PACKAGE=onnxruntime-gpu==1.31.1
ARG WITH_CUDA=1
ARG SANITIZER_PACKAGE=nvidia-cuda-sanitizer-api==13.0.85
# hadolint ignore=DL3013
RUN if [ "$ORT_PACKAGE" != onnxruntime ]; then \
        .venv/bin/pip uninstall --quiet -y onnxruntime \
        && .venv/bin/pip install --quiet --no-cache-dir "$ORT_PACKAGE"; fi \
    && if [ "$WITH_CUDA" = 1 ]; then \
        .venv/bin/pip install --quiet --no-cache-dir --target /opt/cuda-tools \
        "$SANITIZER_PACKAGE"; fi
COPY --from=build /opt/dcnserve/model /opt/dcnserve/model
COPY --from=build /opt/dcnserve/onnx_plugins /opt/dcnserve/onnx_plugins
# What `make gpu-check PREBUILT=1` runs against these libraries on a GPU host (docs/gpu.md).
COPY Makefile pyproject.toml ./
COPY gpu_check gpu_check
COPY benchmarks benchmarks
COPY tests tests
# The service is not compiled: editing it rebuilds nothing.
COPY service /opt/dcnserve/service
ENV PATH=/opt/dcnserve/.venv/bin:/opt/cuda-tools/nvidia/cu13/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DCN_HOST=0.0.0.0 \
    DCN_PORT=8000 \
    DCN_DEVICE=auto \
    DCN_CACHE_DIR=/var/cache/dcnserve
USER 10001
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DCN_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["python", "-m", "service"]
