#!/usr/bin/env bash
# Builds the Worker into build/ with worker-build, using only local tools (no downloads):
# the wasm-bindgen CLI from cargo, wasm-opt from npm's binaryen, esbuild from wrangler's deps.
# wrangler runs this as its [build] command; scripts/setup.sh installs the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen || true)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
for tool in worker-build "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN"; do
  if [ -z "$tool" ] || ! command -v "$tool" >/dev/null 2>&1; then
    echo "build: ${tool:-wasm-bindgen} is missing; run: bash scripts/setup.sh" >&2
    exit 1
  fi
done
worker-build --release

# worker-build runs binaryen at -O and keeps the wasm "name" section (about 100 KB) for readable
# panic traces. The deployed bundle gets a further pass for size (-Os: 2.6 KB less gzipped than
# worker-build's output) and drops the name section: a smaller module is
# parsed faster at cold start. A trace's function indices are resolved with
# build/index_bg.symbols, the optimised module's index-to-name map (not part of the bundle).
# --low-memory-unused lets binaryen fold `pointer + constant` into the load's or store's offset
# (3.3 KB less gzipped, and fewer instructions): the two differ only when the sum wraps past
# 4 GiB into the first KiB, and no pointer here comes near 4 GiB (a Worker has 128 MB); Rust's
# data starts at 1 MiB, below it only the stack's deepest end.
"$WASM_OPT_BIN" build/index_bg.wasm -o build/index_bg.wasm -Os --low-memory-unused \
  --symbolmap=build/index_bg.symbols \
  --strip-debug --strip-producers \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
