#!/usr/bin/env bash
# Builds the worker when there is no build or a source is newer than it, so that what runs is
# the code as it stands (used by bench.sh and demo.sh; the test suite always builds).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/index_bg.wasm ] \
   || [ -n "$(find src core/src Cargo.toml Cargo.lock -newer build/index_bg.wasm -print -quit)" ]; then
  bash scripts/build.sh
fi
