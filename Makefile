# tttd - plain Makefile.
#
# Targets: all run test test-gpu bench deps deps-test fuzz asan ubsan tsan fixtures clean
# Options (make VAR=value):
#   CUDA=0          build without the CUDA backend even when nvcc is found
#   CUDA_ARCH=sm_XX GPU architecture (default: detected with nvidia-smi, else sm_90)
#   CUDNN=0         build without cuDNN even when it is found (attention then never takes it)
#   SANITIZER=address|undefined|thread   instrumented build (CUDA off); address,undefined for both
#   OPENMP=0        no OpenMP threading in the CPU kernels
#   BUILD=dir       output folder (default build)
#   CI=true         warnings are errors
#   FUZZ_SECONDS=N  how long `make fuzz` runs each target (default 60)
#   FUZZ_BIN=dir    where `make fuzz-run` finds the fuzz binaries (default build/fuzz)
#   RUN_ARGS=...    arguments appended to `tttd serve` by `make run`

CC ?= cc
comma := ,
BUILD ?= build
SANITIZER ?=
OPENMP ?= 1
FUZZ_SECONDS ?= 60
RUN_ARGS ?=
PYTHON ?= /usr/bin/python3

# Recursive (=) on purpose: pkg-config and the folder look-ups run when a recipe runs, after
# `make deps`. With OpenMP on, OpenBLAS's OpenMP build is preferred: it shares the kernels' thread
# pool instead of starting its own threads that compete with it for the cores.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_OMP_DIR = $(if $(filter 1,$(OPENMP)),$(wildcard /usr/lib/$(MULTIARCH)/openblas-openmp/libopenblas.so))
BLAS_CFLAGS = $(if $(BLAS_OMP_DIR),-I/usr/include/$(MULTIARCH)/openblas-openmp,$(shell pkg-config --cflags openblas 2>/dev/null))
BLAS_LIBS = $(if $(BLAS_OMP_DIR),-L$(dir $(BLAS_OMP_DIR)) -Wl$(comma)-rpath$(comma)$(dir $(BLAS_OMP_DIR)) -lopenblas,$(or $(shell pkg-config --libs openblas 2>/dev/null),-lopenblas))
PKG_NAMES = jansson spng libturbojpeg libmicrohttpd libuv
PKG_CFLAGS = $(shell pkg-config --cflags $(PKG_NAMES) 2>/dev/null) $(BLAS_CFLAGS)
PKG_LIBS = $(or $(shell pkg-config --libs $(PKG_NAMES) 2>/dev/null),-ljansson -lspng -lturbojpeg -lmicrohttpd -luv) $(BLAS_LIBS)

WARN = -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow
ifeq ($(CI),true)
WARN += -Werror
endif
OPT ?= -O2
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) -g -I. $(WARN) -MMD -MP -pthread $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lm -pthread $(LDLIBS)
LDFLAGS_ALL = $(LDFLAGS)

ifneq ($(SANITIZER),)
CUDA = 0
OPT = -O1
CFLAGS_ALL += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_ALL += -fsanitize=$(SANITIZER)
ifeq ($(SANITIZER),thread)
OPENMP = 0
endif
endif
ifeq ($(OPENMP),1)
CFLAGS_ALL += -fopenmp
LDFLAGS_ALL += -fopenmp
else
# Without OpenMP the kernels' `#pragma omp` lines are simply serial code.
CFLAGS_ALL += -Wno-unknown-pragmas
endif

# ---- CUDA: built whenever nvcc is found, unless CUDA=0 ----
CUDA ?= auto
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
HAVE_CUDA := 0
ifneq ($(CUDA),0)
ifneq ($(NVCC),)
HAVE_CUDA := 1
endif
endif
ifeq ($(HAVE_CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
DETECTED_SM := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '. ')
CUDA_ARCH ?= $(if $(DETECTED_SM),sm_$(DETECTED_SM),sm_90)
NVCCFLAGS = -O3 -std=c++17 -arch=$(CUDA_ARCH) -lineinfo -I. -DTTTD_CUDA=1 \
            -Xcompiler -Wall,-Wextra$(if $(filter true,$(CI)),$(comma)-Werror) -MMD -MP
CFLAGS_ALL += -DTTTD_CUDA=1 -I$(CUDA_HOME)/include
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
# cuDNN (optional; attention's flash path): cudnn.h and libcudnn from the toolkit, the system, or
# PyTorch's python package nvidia.cudnn. Found: -DTTTD_CUDNN=1 and a link with an rpath to it.
ifneq ($(CUDNN),0)
cudnn_h = $(firstword $(foreach d,$(1),$(wildcard $(d)/cudnn.h)))
cudnn_so = $(firstword $(foreach d,$(1),$(wildcard $(d)/libcudnn.so $(d)/libcudnn.so.[0-9])))
CUDNN_H := $(call cudnn_h,$(CUDA_HOME)/include /usr/include /usr/include/$(MULTIARCH))
CUDNN_SO := $(call cudnn_so,$(CUDA_HOME)/lib64 $(CUDA_HOME)/lib /usr/lib/$(MULTIARCH))
ifeq ($(and $(CUDNN_H),$(CUDNN_SO)),)
CUDNN_PY := $(shell python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)
ifneq ($(CUDNN_PY),)
CUDNN_H := $(or $(CUDNN_H),$(call cudnn_h,$(CUDNN_PY)/include))
CUDNN_SO := $(or $(CUDNN_SO),$(call cudnn_so,$(CUDNN_PY)/lib))
endif
endif
ifneq ($(and $(CUDNN_H),$(CUDNN_SO)),)
CUDNN_INC := $(filter-out -I/usr/include,-I$(patsubst %/,%,$(dir $(CUDNN_H))))
NVCCFLAGS += -DTTTD_CUDNN=1 $(CUDNN_INC)
CFLAGS_ALL += -DTTTD_CUDNN=1
CUDA_LIBS += $(CUDNN_SO) -Wl,-rpath,$(patsubst %/,%,$(dir $(CUDNN_SO)))
endif
endif
LDLIBS_ALL += $(CUDA_LIBS)
endif

# ---- sources ----
# Every layer is a folder and its sources are the files in it (found, never listed by hand):
# cmd/ (the binary's commands), server/ (the daemon), api/ (the HTTP contract), engine/ (models
# and pipeline, in wings), kernels/ (compute; kernels/cuda/dev/ holds programs of their own).
# Each layer is one static archive, linked top down; tools/check_layers.py (run by `make check`)
# holds the includes to that order.
LAYERS := cmd server api engine kernels
srcs_under = $(sort $(shell find $(1) -name '*.$(2)' -not -path 'kernels/cuda/dev/*' 2>/dev/null))
LIB_SRCS := $(filter-out cmd/main.c kernels/cuda/%,$(call srcs_under,$(LAYERS),c))
CU_SRCS := $(if $(filter 1,$(HAVE_CUDA)),$(call srcs_under,kernels/cuda,cu))
UNIT_SRCS := $(filter-out tests/gpu/% tests/tsan/% tests/fuzz/%,$(call srcs_under,tests,c))
GPU_TEST_SRCS := tests/gpu/test_gpu_ops.c
GPU_E2E_SRCS := tests/gpu/test_gpu_mmdit.c
# The GPU op test needs only tensors, the backends and the kernels: no jansson, which the GPU
# machine lacks headers for.
CORE_SRCS := engine/backend/backend_cpu.c engine/backend/backend_cuda.c engine/core/error.c \
             engine/core/log.c engine/backend/ops.c engine/backend/profile.c \
             engine/backend/tensor.c \
             $(sort $(wildcard kernels/cpu/*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))

OBJ = $(BUILD)/obj
LIB_OBJS := $(LIB_SRCS:%.c=$(OBJ)/%.o) $(CU_SRCS:%.cu=$(OBJ)/%.cu.o)
# The page served at GET / is embedded in the binary: web_index.c is generated from
# server/web/index.html into the build folder (never committed, never stale).
WEB_INDEX_C := $(BUILD)/gen/server/web_index.c
LIB_OBJS += $(OBJ)/gen/server/web_index.o
# One archive per layer, in link order (a layer uses only the ones after it).
layer_objs = $(filter $(OBJ)/$(1)/% $(OBJ)/gen/$(1)/%,$(LIB_OBJS))
LIB := $(LAYERS:%=$(BUILD)/lib/libtttd_%.a)
BIN := $(BUILD)/tttd
UNIT_BIN := $(BUILD)/tests/unit
GPU_TEST_BIN := $(if $(filter 1,$(HAVE_CUDA)),$(BUILD)/tests/gpu_ops $(BUILD)/tests/gpu_mmdit)

.PHONY: all run test check layers unit contract test-model test-web load test-gpu bench dev-cuda deps deps-test fuzz fuzz-build asan ubsan tsan fixtures clean

all: $(BIN)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(OBJ)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(WEB_INDEX_C): server/web/index.html tools/embed_file.py
	@mkdir -p $(dir $@)
	$(PYTHON) tools/embed_file.py $< $@ srv_web_index_html server/web_index.h
$(OBJ)/gen/server/web_index.o: $(WEB_INDEX_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The objects are named only through this pattern, so make would take them for intermediate
# files and delete them after each build: they are kept.
.SECONDARY: $(LIB_OBJS)
.SECONDEXPANSION:
$(BUILD)/lib/libtttd_%.a: $$(call layer_objs,$$*)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(OBJ)/cmd/main.o $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(UNIT_BIN): $(UNIT_SRCS:%.c=$(OBJ)/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcriterion -lcurl

$(BUILD)/tests/gpu_ops: $(GPU_TEST_SRCS:%.c=$(OBJ)/%.o) $(CORE_SRCS:%.c=$(OBJ)/%.o) $(CU_SRCS:%.cu=$(OBJ)/%.cu.o)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(BLAS_LIBS) -lm -pthread $(CUDA_LIBS)

# `make deps` installs the missing Debian packages that building and serving need (`make run`);
# `make deps-test` adds the test-only ones (Criterion, libcurl, wrk, clang and its sanitizer
# runtime, curl), which the test, load, sanitizer and fuzz entry points depend on.
deps:
	@sh tools/install-deps.sh

deps-test:
	@sh tools/install-deps.sh --test

run: deps
	$(MAKE) all
	$(BIN) serve $(RUN_ARGS)

test: deps-test
	$(MAKE) check

# check: build everything (the CUDA code too, when nvcc is here) and run the unit tests.
# The integration tests start $(BIN) serve on a random loopback port; the contract test checks the
# running server against api/openapi.yaml (Python 3 standard library only). Last, the page in
# headless Chromium: test-web installs Debian's chromium and playwright-core (npm ci) the first
# time, when they are missing (tests/web/run.sh), so that `make deps` stays what the build needs.
check: $(BIN) $(UNIT_BIN) $(GPU_TEST_BIN)
	$(MAKE) layers
	TTTD_BIN=$(BIN) $(UNIT_BIN) --jobs 2
	$(MAKE) contract
	$(PYTHON) -B tests/tiny/test_tiny.py
	$(MAKE) test-model
	TTTD_BIN=$(BIN) $(PYTHON) -B tests/deploy/test_deploy.py
	$(PYTHON) -B tests/tools/test_install_deps.py
	TTTD_BIN=$(BIN) $(PYTHON) -B tests/tools/test_readme.py
	$(MAKE) test-web

# The floor plan: includes run down the layers and wings, no two files depend on each other in a
# circle (from the includes and, through nm, from the built objects); the checker's own test first.
layers: $(BIN)
	$(PYTHON) -B tests/tools/test_check_layers.py
	$(PYTHON) -B tools/check_layers.py --objs $(OBJ)

# Only the unit tests (LIB_SRCS / UNIT_SRCS may be narrowed on the command line).
unit: $(BIN) $(UNIT_BIN)
	TTTD_BIN=$(BIN) $(UNIT_BIN) --jobs 2

contract: $(BIN)
	$(PYTHON) -B tests/contract/test_yaml_subset.py
	$(PYTHON) -B tests/contract/test_schema.py
	TTTD_BIN=$(BIN) $(PYTHON) -B tests/contract/test_openapi_contract.py

# The embedded model through the C engine: 16 of the 240 held-out prompts (every 15th; the seeds of
# the full evaluation in bench/RESULTS.md), judged by tools/tiny/evaluate.py, against the issue's bar
# of 0.85 overall. The shipped model scores 1.000 on them (0.978 on all 240); the previous, smaller
# model 0.575; random weights about 0.1.
test-model: $(BIN)
	$(PYTHON) -B tools/tiny/eval_tttd.py --tttd $(BIN) --model models/default \
	    --out $(BUILD)/test-model --every 15 --prompts 16 --min-overall 0.85

# The page at GET / in headless Chromium (installs chromium and playwright-core when missing).
test-web: $(BIN)
	sh tests/web/run.sh $(BIN) $(BUILD)/web

# wrk against a server on a random port: /healthz and /v1/generate at 1, 4, 16 connections,
# appended to bench/RESULTS.md.
load: deps-test
	$(MAKE) all
	sh bench/load.sh -b $(BIN) -o bench/RESULTS.md

# On the GPU machine: every CUDA op against the CPU backend, then the whole MMDiT and the
# denoising loop on CUDA against the reference's golden outputs (this one needs jansson).
test-gpu: $(BUILD)/tests/gpu_ops $(BUILD)/tests/gpu_mmdit
	$(BUILD)/tests/gpu_ops
	$(BUILD)/tests/gpu_mmdit
$(BUILD)/tests/gpu_mmdit: $(GPU_E2E_SRCS:%.c=$(OBJ)/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

bench: $(BIN)
	$(BIN) bench --cpu

# Kernel versions under development (kernels/cuda/dev/README.md): one program per op, each version
# checked against the CPU reference and timed. Built with nvcc; run on a GPU machine.
DEV_CUDA_SRCS := $(sort $(wildcard kernels/cuda/dev/*.cu))
dev-cuda: $(DEV_CUDA_SRCS:kernels/cuda/dev/%.cu=$(BUILD)/dev/%)
DEV_CUDA_DEPS = $(CU_SRCS:%.cu=$(OBJ)/%.cu.o) $(patsubst %.c,$(OBJ)/%.o,$(wildcard kernels/cpu/*.c))
$(OBJ)/kernels/cuda/dev/%.cu.o: kernels/cuda/dev/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
$(BUILD)/dev/%: $(OBJ)/kernels/cuda/dev/%.cu.o $(DEV_CUDA_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(BLAS_LIBS) -lm -pthread $(CUDA_LIBS)

asan: deps-test
	$(MAKE) BUILD=$(BUILD)/asan SANITIZER=address check
ubsan: deps-test
	$(MAKE) BUILD=$(BUILD)/ubsan SANITIZER=undefined check
# Criterion cannot start under TSan (Snaipe/Criterion#274): `make tsan` runs the plain programs
# of tests/tsan/ instead (one binary each: test_threads, the shared engine state; test_pool, real
# jobs through the scheduler, worker pool, completion queue, cancellation and drain), with
# OpenBLAS on one thread (its own threads are not instrumented). Any TSan report fails the run.
TSAN_SRCS := $(sort $(wildcard tests/tsan/test_*.c))
TSAN_BINS := $(TSAN_SRCS:tests/tsan/test_%.c=$(BUILD)/tsan/tests/tsan_%)
TSAN_OPTIONS ?= halt_on_error=1 exitcode=66 second_deadlock_stack=1
tsan: deps-test
	$(MAKE) BUILD=$(BUILD)/tsan SANITIZER=thread $(TSAN_BINS)
	@set -e; for t in $(TSAN_BINS); do \
	  echo "== $$t"; \
	  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 TSAN_OPTIONS="$(TSAN_OPTIONS)" $$t; \
	done
$(BUILD)/tests/tsan_%: $(OBJ)/tests/tsan/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# libFuzzer targets (clang, ASan + UBSan): tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME
# (tests/fuzz/README.md). `make fuzz` builds them into $(FUZZ_BUILD) and runs each FUZZ_SECONDS;
# `make -jN fuzz` runs N at once. fuzz-run runs binaries built elsewhere: FUZZ_BIN=dir.
# Logs: $(FUZZ_OUT)/NAME.log; a crash input in $(FUZZ_OUT)/artifacts/NAME/ fails the run.
FUZZ_BUILD = $(BUILD)/fuzz
FUZZ_BIN ?= $(FUZZ_BUILD)
FUZZ_OUT ?= $(FUZZ_BUILD)
FUZZ_ARGS ?=
FUZZ_NAMES := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
fuzz: deps-test
	$(MAKE) fuzz-build
	$(MAKE) fuzz-run
fuzz-build:
	$(MAKE) CC=clang BUILD=$(FUZZ_BUILD) CUDA=0 OPENMP=0 \
	  CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" LDFLAGS="-fsanitize=address,undefined" \
	  $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
$(BUILD)/fuzz_%: $(OBJ)/tests/fuzz/fuzz_%.o $(LIB)
	$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_ALL)
.PHONY: fuzz-run
fuzz-run: $(FUZZ_NAMES:%=fuzz-run-%)
	@sh tests/fuzz/summary.sh $(FUZZ_OUT) $(FUZZ_NAMES)
fuzz-run-%:
	@sh tests/fuzz/run.sh $(FUZZ_BIN) $(FUZZ_OUT) $* $(FUZZ_SECONDS) $(FUZZ_ARGS)

# The PyTorch reference regenerates tests/fixtures/ (Debian's python3-torch; CI needs neither:
# the fixtures are committed).
fixtures:
	@$(PYTHON) -c 'import torch, numpy' 2>/dev/null || sh tools/install-deps.sh --reference
	$(PYTHON) tools/reference/make_fixtures.py
	$(PYTHON) tools/reference/make_vae_fixtures.py
	$(PYTHON) tools/reference/make_text_encoder_fixtures.py
	$(PYTHON) tools/make_tiny_model.py
	$(PYTHON) tools/reference/make_pipeline_fixtures.py

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
