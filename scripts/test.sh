#!/usr/bin/env bash
# The whole test suite (README: `npm test`; CI: .ci/run). Installs the tools when missing,
# then: formatting, clippy on the native and wasm targets, the core's unit tests, the wasm
# build, and the end-to-end tests of the built worker in local workerd.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n\033[1;34m== %s\033[0m\n' "$*" >&2; }

step "tools"
bash scripts/setup.sh --browser --prometheus --python-sdk
step "cargo fmt --check"
cargo fmt --all -- --check
step "clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (wasm32)"
cargo clippy --workspace --target wasm32-unknown-unknown --locked -- -D warnings
step "unit tests of the core (native)"
cargo test -p bluegreen-core --locked
step "build the worker"
bash scripts/build.sh
step "end-to-end tests (local workerd)"
mkdir -p test-output
node --test --test-concurrency=1 tests/
