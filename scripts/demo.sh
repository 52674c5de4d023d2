#!/usr/bin/env bash
# The offline demo (README: `npm run demo`): installs the tools and builds when needed, then
# runs scripts/demo.mjs (two compressed rollouts against the local simulator; see there).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
bash scripts/ensure-build.sh >&2
exec node scripts/demo.mjs "$@"
