// Fault benchmark (issue 11, part 3): what a broken green costs users, with the green breaker on
// (the default settings) and off (GREEN_EJECTION=off).
//
// For each case, mode and breaker setting: a fresh router (the built worker in local workerd
// through Miniflare, one isolate, so one breaker) in front of the upstream simulator
// (sim/upstream.mjs, blue answering after SIM_DELAY_MS), 30% green by the routing document in
// KV, then REQUESTS chat completions at concurrency CONCURRENCY. The green model
//   hung     accepts the connection and never answers (no response headers for an hour)
//   refused  has its connection closed before any response (the simulator's
//            drop: "before-headers")
//   503      answers 503
// Modes: non-streamed, and streamed (each stream is read to its end).
//
// Reported per row: requests sent; how many waited more than 5 s longer than blue's answers
// (latency minus the median latency of the requests blue served without a fallback in the same
// row; the target: at most 2% with the breaker on, for the hung green); the extra wait of
// the green-routed requests (p50/p95/max); the fallbacks by reason (x-bluegreen-fallback); and
// what the controller's /admin/status counted for green (requests, error rate, errors by class),
// to show that green still looks as broken as it is.
//
// Bounded: a row stops issuing requests after SEND_CAP_MS, a request is abandoned by the client
// after REQUEST_CAP_MS (counted as waiting that long: only the breaker-off hung rows reach it,
// where the router would wait its whole 240 s completion limit), and the run exits after
// RUN_CAP_MS. Servers listen on 127.0.0.1 only. BENCH_QUICK=1 sends a fifth of the requests.
//
// Run: npm run bench:faults   (or node bench/faults.mjs once build/ exists)
import { startStack, setRouting, eventually } from "../tests/harness.mjs";

const QUICK = process.env.BENCH_QUICK === "1";
const REQUESTS = QUICK ? 200 : 1000;
const CONCURRENCY = 20;
const GREEN_PERCENT = 30;
const SIM_DELAY_MS = 20;
const EXTRA_LIMIT_MS = 5000;
const SEND_CAP_MS = 30_000;
const REQUEST_CAP_MS = 35_000;
const RUN_CAP_MS = 900_000;
const TOKEN = "faults-bench-token";
const BLUE = "deepseek-v3";
const GREEN = "gemini-2.5-flash";

const CASES = [
  { name: "hung", rule: { delay_ms: 3_600_000 } },
  { name: "refused", rule: { drop: "before-headers" } },
  { name: "503", rule: { status: 503 } },
];
const MODES = [
  { name: "non-streamed", stream: false },
  { name: "streamed", stream: true },
];

const runCap = setTimeout(() => {
  console.error(`fault benchmark: gave up after ${RUN_CAP_MS / 1000} s`);
  process.exit(1);
}, RUN_CAP_MS);

/** One chat completion, read to its end: { ms, status, environment, fallback, cut }. */
async function one(url, stream) {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ stream, messages: [{ role: "user", content: "hello there" }] }),
      signal: AbortSignal.timeout(REQUEST_CAP_MS),
    });
    await res.arrayBuffer();
    return {
      ms: performance.now() - t0,
      status: res.status,
      environment: res.headers.get("x-bluegreen-environment"),
      fallback: res.headers.get("x-bluegreen-fallback"),
      cut: false,
    };
  } catch {
    return { ms: performance.now() - t0, status: 0, environment: null, fallback: "(cut by the client)", cut: true };
  }
}

/** Sends up to `n` requests, `concurrency` at a time, issuing none after SEND_CAP_MS. */
async function load(url, stream) {
  const results = [];
  const start = Date.now();
  let issued = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < REQUESTS && Date.now() - start < SEND_CAP_MS) {
        issued++;
        results.push(await one(url, stream));
      }
    }),
  );
  return { results, seconds: (Date.now() - start) / 1000 };
}

const quantile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : NaN);

async function row(c, mode, breaker) {
  const vars = { ADMIN_TOKEN: TOKEN, ...(breaker ? {} : { GREEN_EJECTION: "off" }) };
  const stack = await startStack(vars, { delayMs: SIM_DELAY_MS });
  try {
    await setRouting(stack.router, { blue_model: BLUE, green_model: GREEN, green_percent: GREEN_PERCENT });
    // Warm the isolate with blue alone (forced, so nothing is counted as routed traffic and
    // the breaker has blue's answer times, as it would in a running deployment).
    for (let i = 0; i < 5; i++) {
      await fetch(`${stack.router.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-bluegreen-environment": "blue" },
        body: JSON.stringify({ stream: mode.stream, messages: [{ role: "user", content: "warm" }] }),
      }).then((r) => r.arrayBuffer());
    }
    await stack.sim.setRules({ [GREEN]: c.rule });
    const { results, seconds } = await load(stack.router.url, mode.stream);
    const blueMs = results.filter((r) => r.environment === "blue" && !r.fallback && r.status === 200).map((r) => r.ms);
    blueMs.sort((a, b) => a - b);
    const blue = quantile(blueMs, 0.5);
    const extra = (r) => Math.max(0, r.ms - blue);
    const late = results.filter((r) => extra(r) > EXTRA_LIMIT_MS).length;
    const greenRouted = results.filter((r) => r.environment === "green" || r.fallback).map(extra);
    greenRouted.sort((a, b) => a - b);
    const reasons = {};
    for (const r of results) if (r.fallback) reasons[r.fallback] = (reasons[r.fallback] ?? 0) + 1;
    const failed = results.filter((r) => r.status !== 200).length;
    // The controller's count, once it has taken every batch (a second or two).
    const counted = await eventually(async () => {
      const s = (await stack.router.status()).stats;
      const n = s.rollout.blue.requests + s.rollout.green.requests;
      return n >= results.filter((r) => !r.cut).length ? s : null;
    }, 10_000, 250);
    const s = counted || (await stack.router.status()).stats;
    const g = s.rollout.green;
    const classes = Object.entries(g.errors_by_class)
      .filter(([, v]) => v)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    return {
      case: c.name,
      mode: mode.name,
      breaker: breaker ? "on" : "off",
      requests: results.length,
      seconds,
      blue,
      late,
      failed,
      p50: quantile(greenRouted, 0.5),
      p95: quantile(greenRouted, 0.95),
      max: greenRouted.at(-1) ?? NaN,
      reasons,
      green: `${g.requests} req, ${g.errors} err (${g.requests ? ((100 * g.errors) / g.requests).toFixed(0) : "-"}%): ${classes || "none"}`,
    };
  } finally {
    await stack.close();
  }
}

const s1 = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "-");

const rows = [];
for (const breaker of [true, false]) {
  for (const c of CASES) {
    for (const mode of MODES) {
      const r = await row(c, mode, breaker);
      rows.push(r);
      console.error(
        `${r.case} ${r.mode} breaker ${r.breaker}: ${r.requests} requests in ${r.seconds.toFixed(1)} s, ${r.late} waited > 5 s extra`,
      );
    }
  }
}
clearTimeout(runCap);

console.log(
  `\n${REQUESTS} requests at concurrency ${CONCURRENCY}, ${GREEN_PERCENT}% green, blue answering after ${SIM_DELAY_MS} ms; ` +
    `extra wait = latency - blue's median latency in the same row, of the green-routed requests (s)\n`,
);
console.log("| green | mode | breaker | requests | waited > 5 s extra | extra wait p50 / p95 / max s | fallbacks by reason | non-200 | green in /admin/status |");
console.log("|---|---|---|---:|---:|---:|---|---:|---|");
for (const r of rows) {
  const reasons = Object.entries(r.reasons)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  const pct = ((100 * r.late) / r.requests).toFixed(1);
  console.log(
    `| ${r.case} | ${r.mode} | ${r.breaker} | ${r.requests} | ${r.late} (${pct}%) | ${s1(r.p50)} / ${s1(r.p95)} / ${s1(r.max)} | ${reasons || "none"} | ${r.failed} | ${r.green} |`,
  );
}
const target = rows.filter((r) => r.case === "hung" && r.breaker === "on");
const met = target.every((r) => r.late <= 0.02 * r.requests);
console.log(`\ntarget (hung green, breaker on, both modes): at most 2% wait > 5 s extra: ${met ? "MET" : "MISSED"}`);
