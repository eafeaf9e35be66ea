# syntax=docker/dockerfile:1
#
# Dockerfile - the tttd container image: a build stage that runs the repository's own `make deps`
# and `make` on Debian 12, and a slim runtime stage with the binary, the shared libraries it links
# (and nothing else), the models and a non-root user. From the repository root:
#
#   docker build -t tttd .                                           the CPU image
#   docker run --rm -p 8080:8080 tttd                                serves on :8080
#
# The build context is the repository less what .dockerignore leaves out. deploy/ holds the rest
# of the deployment (compose, Kubernetes, nginx, systemd, Prometheus); deploy/README.md says more.
#
# CUDA variant: build FROM an nvidia/cuda devel image (nvcc on PATH, so the Makefile builds the
# CUDA backend) and run FROM the matching runtime image (cuBLAS and the CUDA runtime):
#
#   docker build -t tttd:cuda \
#     --build-arg BUILD_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04 \
#     --build-arg CUDA_ARCH=sm_90 .
#   docker run --rm --gpus all -p 8080:8080 tttd:cuda
#
# CUDA_ARCH is the GPU architecture nvcc compiles for (sm_90: H100/H200; sm_89: L4/L40; sm_80:
# A100); nothing can detect it during a build. CUDA=0 builds the CPU backend only. With the
# -cudnn-devel / -cudnn-runtime pair of images the build finds cuDNN and BF16 attention runs
# cuDNN's flash attention (a binary built against cuDNN needs libcudnn where it runs).
#
# The model: with no --model, tttd serves models/default when it exists, else the tiny test
# pipeline tests/fixtures/tiny_model (random weights: it draws noise) - the same rule as `make run`,
# resolved in the working directory /opt/tttd. Serve your own by mounting it and naming it:
#   docker run -v /srv/sd35:/models/sd35:ro -e TTTD_MODEL=default=/models/sd35 ...
# Options come from TTTD_* variables (`tttd serve --help` lists them); give the port as TTTD_PORT
# (not --port) so that the HEALTHCHECK follows it. On `docker stop`, tttd drains for up to
# --drain-timeout (30 s): give it `docker stop -t 40` (compose: stop_grace_period).

ARG BUILD_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- build ----
FROM ${BUILD_IMAGE} AS build
ARG CUDA=auto
ARG CUDA_ARCH=
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The packages first, in their own layer: install-deps.sh changes far less often than the sources.
COPY Makefile ./
COPY tools/install-deps.sh tools/
RUN make deps && rm -rf /var/lib/apt/lists/*
COPY . .
# The binary only (not the tests); then the Debian packages of the libraries it links directly.
RUN make -j"$(nproc)" CUDA="$CUDA" ${CUDA_ARCH:+CUDA_ARCH="$CUDA_ARCH"} build/tttd \
 && build/tttd serve --help > /dev/null \
 && sh deploy/runtime-packages.sh build/tttd > build/runtime-packages.txt \
 && echo "runtime packages:" $(cat build/runtime-packages.txt)

# ---- runtime ----
FROM ${RUNTIME_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
COPY --from=build /src/build/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --user-group --uid 10001 --home-dir /opt/tttd --no-create-home \
            --shell /usr/sbin/nologin tttd

COPY --from=build /src/build/tttd /usr/local/bin/tttd
COPY --chmod=0755 deploy/healthcheck.sh /usr/local/bin/tttd-healthcheck
# The models stay owned by root: the daemon only reads them.
WORKDIR /opt/tttd
COPY models/ models/
COPY tests/fixtures/tiny_model/ tests/fixtures/tiny_model/
# Fails the build when a library is missing (one that belongs to no package and that the runtime
# image does not have).
RUN ! ldd /usr/local/bin/tttd | grep 'not found' && tttd serve --help > /dev/null

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["tttd-healthcheck", "/healthz"]
ENTRYPOINT ["tttd"]
CMD ["serve", "--host", "0.0.0.0"]
