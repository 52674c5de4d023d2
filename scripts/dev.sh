#!/usr/bin/env bash
# Runs the router locally on http://127.0.0.1:8787 (README's first command): installs the
# tools when missing, starts the bundled upstream simulator on 127.0.0.1:8790, and serves the
# worker with `wrangler dev` on local KV and Durable Object storage (.wrangler/state).
#
# UPSTREAM_BASE_URL=https://api.holysheep.ai/v1 npm run dev   uses HolySheep instead of the
# simulator (clients then send their HolySheep key as the OpenAI API key).
# Extra arguments go to wrangler dev, e.g. `npm run dev -- --var GREEN_PERCENT:30`.
#
# Locally the admin API's token is ADMIN_TOKEN from the environment, else `dev-admin-token`,
# the metrics endpoint's METRICS_TOKEN, else `dev-metrics-token`, request ids are sealed with
# FEEDBACK_SECRET, else a fixed local one of 32 bytes, and scores need FEEDBACK_TOKEN, else
# `dev-feedback-token` (so that POST /v1/feedback works), and the cron is played by a ticker
# that calls wrangler's /__scheduled every TICK_SECONDS (default 60, as the deployed
# `* * * * *` trigger; wrangler dev runs no crons by itself). Once the router answers, two routes
# are created unless they exist (the local state in .wrangler/state keeps them): `gpt-4.1`
# (blue deepseek-v3) and `summarise` (blue qwen-max), beside the default route from the vars.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SIM_PORT="${SIM_PORT:-8790}"
if [ -z "${UPSTREAM_BASE_URL:-}" ]; then
  node sim/upstream.mjs --host 127.0.0.1 --port "$SIM_PORT" --delay-ms "${SIM_DELAY_MS:-40}" &
  SIM_PID=$!
  trap 'kill $SIM_PID 2>/dev/null || true' EXIT INT TERM
  UPSTREAM_BASE_URL="http://127.0.0.1:$SIM_PORT/v1"
fi
ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"
METRICS_TOKEN="${METRICS_TOKEN:-dev-metrics-token}"
FEEDBACK_SECRET="${FEEDBACK_SECRET:-dev-feedback-secret-for-local-use-only}"
FEEDBACK_TOKEN="${FEEDBACK_TOKEN:-dev-feedback-token}"
TICK_SECONDS="${TICK_SECONDS:-60}"
node -e '
  const every = Number(process.argv[1]) * 1000;
  setInterval(() => fetch("http://127.0.0.1:8787/__scheduled?cron=*+*+*+*+*").catch(() => {}), every);
' "$TICK_SECONDS" &
TICKER_PID=$!
node -e '
  const [token, ...routes] = process.argv.slice(1);
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const base = "http://127.0.0.1:8787/admin/routes";
  (async () => {
    for (let i = 0; i < 600; i++) {
      try { if ((await fetch("http://127.0.0.1:8787/healthz")).ok) break; } catch {}
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const pair of routes) {
      const [name, blue] = pair.split("=");
      try {
        if ((await fetch(`${base}/${name}`, { headers })).status !== 404) continue;
        const res = await fetch(`${base}/${name}`, { method: "PUT", headers, body: JSON.stringify({ blue_model: blue }) });
        console.error(`dev: route ${name} (blue ${blue}): ${res.status}`);
      } catch (e) {
        console.error(`dev: route ${name} not created: ${e.message}`);
      }
    }
  })();
' "$ADMIN_TOKEN" "gpt-4.1=deepseek-v3" "summarise=qwen-max" &
ROUTES_PID=$!
trap 'kill ${SIM_PID:-} $TICKER_PID $ROUTES_PID 2>/dev/null || true' EXIT INT TERM
echo "router: http://127.0.0.1:8787  upstream: $UPSTREAM_BASE_URL  admin token: $ADMIN_TOKEN  metrics token: $METRICS_TOKEN  feedback token: $FEEDBACK_TOKEN  tick: every ${TICK_SECONDS}s" >&2
WRANGLER_SEND_METRICS=false npx wrangler dev --ip 127.0.0.1 --port 8787 \
  --persist-to .wrangler/state --test-scheduled \
  --var "UPSTREAM_BASE_URL:$UPSTREAM_BASE_URL" --var "ADMIN_TOKEN:$ADMIN_TOKEN" \
  --var "METRICS_TOKEN:$METRICS_TOKEN" --var "FEEDBACK_SECRET:$FEEDBACK_SECRET" \
  --var "FEEDBACK_TOKEN:$FEEDBACK_TOKEN" "$@"
