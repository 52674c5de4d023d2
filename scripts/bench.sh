#!/usr/bin/env bash
# Benchmarks the router against a pass-through baseline Worker and the bare upstream simulator
# (see bench/run.mjs for what is measured and how). Installs the tools and builds first when
# needed. Prints a Markdown table and the targets; takes about 3½ minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/ensure-build.sh
# `bench.sh controller`: the rollout controller's capacity (bench/controller.mjs) instead.
if [ "${1:-}" = controller ]; then
  shift
  exec node bench/controller.mjs "$@"
fi
# `bench.sh faults`: what a hung, refusing or failing green costs users (bench/faults.mjs).
if [ "${1:-}" = faults ]; then
  shift
  exec node bench/faults.mjs "$@"
fi
# `bench.sh bodies`: what the largest and worst request bodies cost in CPU (bench/bodies.mjs).
if [ "${1:-}" = bodies ]; then
  shift
  exec node bench/bodies.mjs "$@"
fi
# `bench.sh queue`: stats straight to the controller against through the queue (bench/queue.mjs).
if [ "${1:-}" = queue ]; then
  shift
  exec node bench/queue.mjs "$@"
fi
exec node bench/run.mjs "$@"
