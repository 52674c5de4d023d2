#!/usr/bin/env bash
# Installs everything bluegreen-router needs, from the package registries only, idempotently:
# the wasm target, worker-build and the wasm-bindgen CLI matching Cargo.lock (cargo install is
# a no-op when that version is present), and the npm tools pinned in package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
# OpenAI's Python SDK, for the test that drives the router with it (--python-sdk).
PYTHON_OPENAI_VERSION=3.63.0
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
# Optional Debian packages for end-to-end tests, from apt, once each:
#   --browser     chromium, for the dashboard's test (Playwright drives it; playwright-core
#                 itself comes from npm and downloads no browser);
#   --prometheus  prometheus (with promtool), for the metrics endpoint's test, which starts its
#                 own server on 127.0.0.1: the package's service is kept from starting.
# And from PyPI:
#   --python-sdk  OpenAI's Python SDK (pinned) in .venv-sdk/, for the test that drives the
#                 router with it as an app would.
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
APT_UPDATED=""
apt_install() { # apt_install PACKAGE WHY
  say "installing Debian's $1 for $2 (once; a minute or two)"
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
for arg in "$@"; do
  case "$arg" in
    --browser)
      command -v chromium >/dev/null 2>&1 || apt_install chromium "the browser test"
      ;;
    --prometheus)
      if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        # No service start during the install (policy-rc.d exit 101: "action forbidden"): the
        # package would otherwise start a server on every interface, port 9090.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
          printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
          $SUDO chmod +x /usr/sbin/policy-rc.d
          trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt_install prometheus "the metrics test"
      fi
      ;;
    --python-sdk)
      if ! .venv-sdk/bin/python -c "import openai; assert openai.__version__ == '$PYTHON_OPENAI_VERSION'" 2>/dev/null; then
        say "installing OpenAI's Python SDK $PYTHON_OPENAI_VERSION into .venv-sdk (once; under a minute)"
        python3 -m venv .venv-sdk
        .venv-sdk/bin/pip install --quiet --disable-pip-version-check "openai==$PYTHON_OPENAI_VERSION"
      fi
      ;;
    *) echo "setup.sh: unknown option $arg (known: --browser, --prometheus, --python-sdk)" >&2; exit 2 ;;
  esac
done
say "tools ready"
