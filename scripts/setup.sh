#!/usr/bin/env bash
# Installs everything bluegreen-router needs, from the package registries only, idempotently:
# the wasm target, worker-build and the wasm-bindgen CLI matching Cargo.lock (cargo install is
# a no-op when that version is present), and the npm tools pinned in package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
# The CLI must match the wasm-bindgen library exactly; Cargo.toml pins it with "=".
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

have() { # have BIN VERSION: is BIN on PATH and printing VERSION?
  command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"
}
export PATH="$HOME/.cargo/bin:$PATH"
if ! have worker-build "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi
if ! have wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  # Not --locked: one of its locked dependencies is no longer in the registry.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# npm ci only when node_modules is missing or older than the lock file.
if [ ! -x node_modules/.bin/wrangler ] || [ ! -f node_modules/.package-lock.json ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm tools (wrangler, workerd, miniflare, binaryen)"
  npm ci --no-audit --no-fund --loglevel=error
fi
# `setup.sh --browser`: Debian's chromium too, for the dashboard's end-to-end test (Playwright
# drives it; playwright-core itself comes from npm and downloads no browser).
if [ "${1:-}" = --browser ] && ! command -v chromium >/dev/null 2>&1; then
  say "installing Debian's chromium for the browser test (once; a minute or two)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
say "tools ready"
