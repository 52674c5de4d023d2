// The offline demo (README: `npm run demo`): the upstream simulator, the router in local
// workerd with two routes (`chat` and `summarise`, as an app would name its models) and a
// traffic generator sending to both, then two compressed rollouts at once, one a route, with
// seconds-long steps: on `chat` a healthy green that completes and becomes blue, on
// `summarise` a green that starts failing a few percent of its requests mid-rollout and is
// rolled back by its controller on its own, while `chat`'s goes on. Prints a
// timeline, a summary and the dashboard URL, and stops everything it started. No key, no
// network. Exits 1 if either rollout does not end as it should. With `--keep`, the router and
// simulator stay up after the summary (for the dashboard) until Ctrl-C.
import { startSimulator } from "../sim/upstream.mjs";
import { startRouter, chat, sleep } from "../tests/harness.mjs";

const TOKEN = "demo-admin-token";
const TICK_MS = 2000; // the cron, compressed: one tick every 2 s instead of every minute
const STEPS = [
  { green_percent: 10, hold_seconds: 8 },
  { green_percent: 30, hold_seconds: 8 },
  { green_percent: 60, hold_seconds: 8 },
];
const HEALTH = { min_requests: 20 };
const CONCURRENCY = 4;
const ROLLOUT_CAP_MS = 70_000; // a rollout that has not ended by then fails the demo
const DEMO_CAP_MS = 120_000; // the traffic generator stops by itself after this
// The two routes: a name clients send as `model`, its blue, the green rolled out on it.
const ROUTES = [
  { name: "chat", blue: "deepseek-v3", green: "gemini-2.5-flash" },
  { name: "summarise", blue: "qwen-max", green: "candidate-2", degradeFromStep: 2 },
];
const FAIL_RATE = 0.08; // the second green's failures, from its second step on

const t0 = Date.now();
const clock = () => {
  const s = Math.floor((Date.now() - t0) / 1000);
  return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
};
const say = (line = "") => console.log(line);
const n = (x) => Number(x).toLocaleString("en-US");
const envLine = (name, e) =>
  `  ${name.padEnd(5)} ${n(e.requests).padStart(6)} requests | ${String(e.errors).padStart(3)} errors` +
  ` | ${e.mean_ms == null ? "—" : Math.round(e.mean_ms) + "ms"} avg | p95 ${e.p95_ms ?? "—"}ms`;

const sim = await startSimulator({ delayMs: 40 });
// Every model fails 0.5% of requests (a realistic baseline: blue's failures reach clients,
// green's fall back to blue), and blue answers a little slower than the greens.
const baseRules = { "*": { fail_rate: 0.005, fail_status: 503 }, "deepseek-v3": { delay_ms: 55 } };
await sim.setRules(baseRules);
const router = await startRouter({
  UPSTREAM_BASE_URL: `${sim.url}/v1`,
  ADMIN_TOKEN: TOKEN,
  BLUE_MODEL: "deepseek-v3",
  GREEN_MODEL: "gemini-2.5-flash",
  ROUTING_CACHE_SECONDS: "0",
  MODEL_PRICES: JSON.stringify({
    "deepseek-v3": { input: 0.27, output: 1.1 },
    "gemini-2.5-flash": { input: 0.3, output: 2.5 },
    "candidate-2": { input: 0.2, output: 0.8 },
    "qwen-max": { input: 0.4, output: 1.2 },
  }),
});
const admin = async (method, route, body) => {
  const r = await router.admin(method, route, body);
  if (r.status >= 400) throw new Error(`${method} /admin/${route}: ${r.status} ${r.text}`);
  return r.body;
};

// The traffic generator: CONCURRENCY loops of chat completions, some streamed, until stopped.
let running = true;
let sent = 0;
const generator = Promise.all(
  Array.from({ length: CONCURRENCY }, async (_, k) => {
    let i = 0;
    while (running && Date.now() - t0 < DEMO_CAP_MS) {
      i++;
      await chat(router.url, {
        model: ROUTES[(k + i) % ROUTES.length].name,
        messages: [{ role: "user", content: `demo request ${k}-${i}: say something short` }],
        stream: i % 4 === 0,
        user: `user-${(k * 7919 + i) % 500}`,
      }).catch(() => {});
      sent++;
      await sleep(15);
    }
  }),
);

const results = [];
const TITLES = {
  completed: "Completed: green is the new blue",
  rolled_back: "ROLLED BACK automatically",
  check_failed: "Check failed",
  paused: "Paused",
  resumed: "Resumed",
  split_set: "Manual split",
};

/** Starts each route's rollout, then ticks (the cron, compressed) until both have ended. */
async function rollouts() {
  const start = Date.now();
  const live = [];
  for (const route of ROUTES) {
    const path = `routes/${route.name}`;
    const status = await admin("POST", `${path}/rollouts`, { green_model: route.green, steps: STEPS, health: HEALTH });
    say(`${clock()} ${route.name}: rollout ${status.rollout.id}, ${route.green} over ${status.blue_model}`);
    live.push({ ...route, path, status, lastEvent: (await admin("GET", `${path}/events?limit=1`)).events[0]?.seq ?? 0 });
  }
  say(`  Steps on each: ${STEPS.map((s) => `${s.green_percent}% for ${s.hold_seconds}s`).join(" → ")} → 100%`);
  say();
  while (Date.now() - start < ROLLOUT_CAP_MS && live.some((r) => !["completed", "rolled_back"].includes(r.status.phase))) {
    await sleep(TICK_MS);
    for (const r of live) {
      r.before = await admin("GET", `${r.path}/status`);
      if (r.degradeFromStep && !r.degraded && r.before.step && r.before.step.number >= r.degradeFromStep) {
        await sim.setRules({ ...baseRules, [r.green]: { fail_rate: FAIL_RATE, fail_status: 503 } });
        r.degraded = true;
        say(`${clock()} ${r.name}: ${r.green} starts failing ${FAIL_RATE * 100}% of its requests (simulator)`);
        say();
      }
    }
    await router.tick();
    for (const r of live) {
      r.status = await admin("GET", `${r.path}/status`);
      const events = (await admin("GET", `${r.path}/events?limit=20`)).events.filter((e) => e.seq > r.lastEvent).reverse();
      for (const e of events) {
        r.lastEvent = Math.max(r.lastEvent, e.seq);
        if (e.kind === "started") continue;
        const title = e.kind === "step_advanced" ? `Traffic shift to ${100 - e.green_percent}/${e.green_percent}` : (TITLES[e.kind] ?? e.kind);
        say(`${clock()} ${r.name}: ${title}`);
        const finished = r.before.step;
        if (finished) {
          say(`  Step ${finished.number} (${finished.green_percent}% green) ran ${finished.elapsed_seconds}s:`);
          say(envLine("Blue", r.before.stats.step.blue));
          say(envLine("Green", r.before.stats.step.green));
        }
        if (e.verdict) say(`  Verdict: ${e.verdict.status}: ${e.verdict.reasons[0]}`);
        say();
      }
      if (!r.done && ["completed", "rolled_back"].includes(r.status.phase)) {
        r.done = true;
        const whole = r.status.stats.rollout;
        results.push({
          route: r.name,
          green: r.green,
          phase: r.status.phase,
          seconds: Math.round((Date.now() - start) / 1000),
          blue: whole.blue,
          green_stats: whole.green,
        });
      }
    }
  }
  return Object.fromEntries(live.map((r) => [r.name, r.status.phase]));
}

let ok = false;
try {
  say("━".repeat(64));
  say(`${clock()} bluegreen-router demo: simulator ${sim.url}, router ${router.url}`);
  say(`  Dashboard: ${router.url}/dashboard  (admin token: ${TOKEN})`);
  say(`  Cron compressed to a tick every ${TICK_MS / 1000}s; ${CONCURRENCY} clients sending requests to both routes`);
  say("━".repeat(64));
  say();
  for (const route of ROUTES) {
    await admin("PUT", `routes/${route.name}`, { blue_model: route.blue });
    say(`${clock()} Route ${route.name}: ${route.blue} (clients send "model": "${route.name}")`);
  }
  say();
  const ended = await rollouts();
  ok = ended.chat === "completed" && ended.summarise === "rolled_back";

  say("━".repeat(64));
  say("Summary");
  say();
  say("| route | green | outcome | seconds | blue req / err | green req / err / fallbacks | green cost |");
  say("|---|---|---|---:|---:|---:|---:|");
  results.forEach((r) =>
    say(
      `| ${r.route} | ${r.green} | ${r.phase} | ${r.seconds} | ${n(r.blue.requests)} / ${r.blue.errors} | ` +
        `${n(r.green_stats.requests)} / ${r.green_stats.errors} / ${r.green_stats.fallbacks} | $${r.green_stats.cost_usd.toFixed(4)} |`,
    ),
  );
  say();
  for (const route of ROUTES) {
    const final = await admin("GET", `routes/${route.name}/status`);
    say(`${route.name}: blue now ${final.blue_model} at ${100 - final.green_percent}%.`);
  }
  say(`${n(sent)} requests sent in ${Math.round((Date.now() - t0) / 1000)} s.`);
  say(ok ? "Demo finished as expected." : "DEMO FAILED: a rollout did not end as expected.");
  running = false;
  await generator;
  if (process.argv.includes("--keep")) {
    say(`Dashboard: ${router.url}/dashboard  token: ${TOKEN}  (router kept running; Ctrl-C stops it)`);
    await new Promise((resolve) => process.once("SIGINT", resolve));
  } else {
    say(`Dashboard (while the demo ran; \`npm run demo -- --keep\` keeps it up): ${router.url}/dashboard  token: ${TOKEN}`);
  }
} catch (e) {
  console.error(`demo failed: ${e.message}`);
} finally {
  running = false;
  await generator;
  await router.close();
  await sim.close();
}
process.exitCode = ok ? 0 : 1;
