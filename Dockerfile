# tttd image: builds the CPU backend (and the CUDA backend when built FROM an
# nvidia/cuda devel image with nvcc on PATH) and runs `tttd serve`.
FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make \
    && sh tools/install-deps.sh && make -j"$(nproc)" all

FROM debian:12-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libopenblas0 libjansson4 libgomp1 libmicrohttpd12 libuv1 libturbojpeg0 libspng0 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/tttd /usr/local/bin/tttd
COPY --from=build /src/models /opt/tttd/models
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tttd"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
