// A local OpenAI-compatible upstream for bluegreen-router's dev loop, tests, demo and benchmark.
//
// It answers POST /v1/chat/completions (JSON or SSE), POST /v1/responses and its stored
// responses (sim/responses.mjs), POST /v1/embeddings (sim/embeddings.mjs), POST /v1/completions (the legacy text completion,
// non-streamed: status and delay_ms rules apply), GET /v1/models and GET /v1/models/{id} like
// an OpenAI-style API, and can be told, per model, to misbehave: answer any status, fail a share of requests,
// stall before its headers, drop the connection before or during a stream, stream slowly, or
// fail inside a 200 stream the way many OpenAI-compatible providers do.
//
// Control endpoints (for tests and the demo; never exposed by the router):
//   PUT  /__sim/rules     {"<model>|*": {status, body, fail_rate, fail_every, fail_status,
//                          delay_ms, stall_ms, drop: "before-headers"|"mid-stream", chunks,
//                          chunk_delay_ms, fault, think_ms, keepalive_ms, headers}}
//                          replaces all rules (and restarts fail_every counts)
//                          fail_rate: fail that share of requests at random;
//                          fail_every: N: fail exactly every Nth request to the model;
//                          headers: {name: value} added to the answer's headers (the "*" rule's
//                          to GET /v1/models too), e.g. set-cookie or connection;
//                          delay_ms: wait before the headers (a slow non-streamed answer;
//                          a huge one is a green that never answers);
//                          think_ms: on a stream, wait this long after the headers before the
//                          first event, sending `: keep-alive` comments every keepalive_ms
//                          when that is set (silence otherwise);
//                          fault (streams, status 200):
//                            "error-first"        the first event is data: {"error": {...}}
//                            "error-after-N"      N events, then an error event, then the end
//                                                 (error-after-1: the role chunk, then the
//                                                 error, as OpenAI-style providers fail)
//                            "done-first"         data: [DONE] and the end: no answer
//                            "done-after-role"    the role chunk, data: [DONE], the end
//                            "end-before-first"   a keep-alive comment, then the end: no event
//                            "break-before-first" the connection drops before any event
//                            "stall-after-N"      N events, then silence with the connection
//                                                 open until the other side closes it
//   Request headers (which the router passes through like any header of the client's) steer
//   one request whatever the rules: `x-sim-status: N` answers N, `x-sim-fault`,
//   `x-sim-think-ms`, `x-sim-keepalive-ms`, `x-sim-delay-ms` and `x-sim-answer` as the rules'
//   fields. A request with `response_format` json_object or json_schema is answered in JSON;
//   answer: "fenced" (JSON in a ```json fence), "truncated" (half, finish_reason length),
//   "filtered" (finish_reason content_filter), "empty", "refusal" (a refusal, no content);
//   and bodies that are no answer at all, sent as `200 application/json` whether or not a
//   stream was asked for: "html" (a proxy's 502 page), "error-object" ({"error": {...}}).
//   A grader's request (response_format json_schema named "pairwise_verdict") is answered with a
//   verdict on its two answers: see `grade` below for the rule field `grader` that steers it.
//   GET  /__sim/requests  requests received (method, path, headers, body, at, closed_at),
//                         oldest first
//   POST /__sim/reset     clears rules and the request log
//
// Run alone: node sim/upstream.mjs [--port 8790] [--host 127.0.0.1] [--delay-ms 0]
import http from "node:http";
import { pathToFileURL } from "node:url";
import { responsesApi } from "./responses.mjs";
import { embeddingsApi } from "./embeddings.mjs";

const MAX_LOG = 5000;

function words(text) {
  return String(text ?? "").split(/\s+/).filter(Boolean);
}

function promptText(messages) {
  if (!Array.isArray(messages)) return "";
  return messages
    .map((m) => (typeof m?.content === "string" ? m.content : JSON.stringify(m?.content ?? "")))
    .join(" ");
}

function lastUserText(messages) {
  const users = (Array.isArray(messages) ? messages : []).filter((m) => m?.role === "user");
  const content = users.at(-1)?.content;
  return typeof content === "string" ? content : "";
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits `ms`, or until `socket` closes, whichever is first; leaves no timer behind either way
 * (a green that "never answers" waits for minutes, and a pending timer would keep the process
 * alive after the test). */
function waitOrClose(ms, socket) {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    const done = () => {
      clearTimeout(timer);
      socket.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    socket.once("close", done);
  });
}

/** The rule fields one request's `x-sim-*` headers set. */
function steered(headers) {
  const out = {};
  if (headers["x-sim-fault"]) out.fault = headers["x-sim-fault"];
  for (const [header, field] of [
    ["x-sim-think-ms", "think_ms"],
    ["x-sim-keepalive-ms", "keepalive_ms"],
    ["x-sim-delay-ms", "delay_ms"],
  ]) {
    const n = Number(headers[header]);
    if (headers[header] !== undefined && Number.isFinite(n) && n >= 0) out[field] = n;
  }
  return out;
}

/** A model thinking before its first event: `ms` of silence, or of keep-alive comments every
 * `keepaliveMs`. Ends early when the connection closes. */
async function think(res, ms, keepaliveMs) {
  const end = Date.now() + ms;
  while (!res.destroyed && Date.now() < end) {
    const wait = Math.min(end - Date.now(), keepaliveMs || Infinity);
    await waitOrClose(wait, res.socket);
    if (keepaliveMs && !res.destroyed && Date.now() < end) res.write(": keep-alive\n\n");
  }
}

/** The answer a model gives to `said`: JSON in JSON mode, made defective as `answer` says
 * ("fenced", "truncated", "filtered", "empty", "refusal"). Returns { reply, finish, refusal },
 * `finish` in chat's words (stop, length, content_filter). */
export function shaped(said, jsonMode, answer) {
  let reply = jsonMode ? JSON.stringify({ reply: said }) : said;
  let finish = "stop";
  let refusal = null;
  if (answer === "fenced") reply = "```json\n" + reply + "\n```";
  if (answer === "truncated") {
    reply = reply.slice(0, Math.ceil(reply.length / 2));
    finish = "length";
  }
  if (answer === "filtered") {
    reply = "";
    finish = "content_filter";
  }
  if (answer === "empty") reply = "";
  if (answer === "refusal") {
    reply = "";
    refusal = "I can't help with that.";
  }
  return { reply, finish, refusal };
}

// The grader. A request whose response_format is the router's pairwise verdict schema is a
// grader's, whatever model it names: it is answered with a verdict on the two answers in its
// <answer_a> and <answer_b> sections. Each answer names the model that wrote it ("Hello from
// <model>"), and an answer from a model whose name holds `worse` loses: of the decisive
// verdicts between a worse and another model, the worse one's answer is preferred only
// `worse_wins` of the time. The rule of the grader's model (or "*") may set `grader`:
//   ties        share of verdicts that are "tie" [0.3]
//   worse_wins  share of decisive verdicts a worse model's answer wins [0.1]
//   bias_a      share of "B" verdicts turned into "A": a grader that prefers position A [0]
//   fail_rate   share of answers that are prose, not the JSON verdict asked for [0]
// Every draw is a hash of the request's body, so the same pair in the same order always gets
// the same verdict.
export const GRADER_SCHEMA = "pairwise_verdict";

function isGraderRequest(body) {
  return body?.response_format?.type === "json_schema" && body.response_format.json_schema?.name === GRADER_SCHEMA;
}

/** A number in [0, 1) from `text` and `salt` (FNV-1a). */
function unit(text, salt) {
  let h = 0x811c9dc5 ^ salt;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}

function section(text, name) {
  const m = String(text).match(new RegExp(`<${name}>\\n([\\s\\S]*?)\\n</${name}>`));
  return m ? m[1] : "";
}

function grade(body, model, flags = {}) {
  const { ties = 0.3, worse_wins = 0.1, bias_a = 0, fail_rate = 0 } = flags;
  const user = body.messages?.find((m) => m.role === "user")?.content ?? "";
  const raw = JSON.stringify(body);
  const worse = (answer) => /Hello from \S*worse/.test(answer);
  const [a, b] = [worse(section(user, "answer_a")), worse(section(user, "answer_b"))];
  let verdict;
  if (unit(raw, 1) < ties) verdict = "tie";
  else if (a === b) verdict = unit(raw, 2) < 0.5 ? "A" : "B";
  else {
    const worseWins = unit(raw, 2) < worse_wins;
    verdict = a === worseWins ? "A" : "B";
  }
  if (verdict === "B" && unit(raw, 3) < bias_a) verdict = "A";
  const reason = verdict === "tie" ? "Both answers serve the request equally." : `Answer ${verdict} is more accurate and complete.`;
  const content = unit(raw, 4) < fail_rate ? `I would say ${verdict}.` : JSON.stringify({ verdict, reason });
  return {
    id: `chatcmpl-sim-grader`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    usage: { prompt_tokens: words(user).length, completion_tokens: words(content).length, total_tokens: words(user).length + words(content).length },
  };
}

/**
 * Starts the simulator. Returns { url, port, server, setRules, requests, reset, close }.
 * `delayMs` is the default time before the response headers of a completion.
 */
export async function startSimulator({ port = 0, host = "127.0.0.1", delayMs = 0, quiet = true } = {}) {
  let rules = {};
  let seen = new Map(); // requests per model since the rules were set, for fail_every
  let log = [];
  let counter = 0;
  const sockets = new Set();

  const ruleFor = (model) => ({ delay_ms: delayMs, ...(rules["*"] ?? {}), ...(rules[model] ?? {}) });

  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://sim");
    try {
      if (url.pathname.startsWith("/__sim/")) return control(url, req, res, raw);
      if (log.length >= MAX_LOG) log.shift();
      const entry = { method: req.method, path: url.pathname + url.search, headers: req.headers, body: raw, at: Date.now() };
      log.push(entry);
      res.on("close", () => {
        entry.closed_at = Date.now(); // when the answer ended or the other side hung up
      });
      if (url.pathname === "/v1/models" && req.method === "GET") return models(res, rules["*"]?.headers);
      const modelId = url.pathname.match(/^\/v1\/models\/([^/]+)$/)?.[1];
      if (modelId && req.method === "GET") return model(res, decodeURIComponent(modelId));
      if (url.pathname === "/v1/chat/completions" && req.method === "POST") return await completion(req, res, raw);
      if (url.pathname === "/v1/completions" && req.method === "POST") return await legacy(req, res, raw);
      if (url.pathname === "/v1/responses" && req.method === "POST") return await responses.create(req, res, raw);
      if (url.pathname === "/v1/embeddings" && req.method === "POST") return await embeddings(req, res, raw);
      if (url.pathname.startsWith("/v1/responses/") && responses.stored(req, res, url.pathname)) return;
      return json(res, 404, { error: { message: `simulator: no route ${req.method} ${url.pathname}`, type: "invalid_request_error", param: null, code: "not_found" } });
    } catch (e) {
      if (!res.headersSent) json(res, 500, { error: { message: `simulator error: ${e.message}`, type: "server_error", param: null, code: null } });
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 30_000;
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  const responses = responsesApi({ admitted, noAnswer, json: (...a) => json(...a), shaped, think, words, sleep });
  const embeddings = embeddingsApi({ admitted, noAnswer, json: (...a) => json(...a), words });

  function json(res, status, body, extra = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...extra });
    res.end(text);
  }

  function control(url, req, res, raw) {
    if (url.pathname === "/__sim/rules" && req.method === "PUT") {
      rules = JSON.parse(raw || "{}");
      seen = new Map();
      return json(res, 200, { ok: true, rules });
    }
    if (url.pathname === "/__sim/requests" && req.method === "GET") return json(res, 200, log);
    if (url.pathname === "/__sim/reset" && req.method === "POST") {
      rules = {};
      seen = new Map();
      log = [];
      return json(res, 200, { ok: true });
    }
    return json(res, 404, { error: { message: "unknown control route" } });
  }

  const MODEL_IDS = ["deepseek-v3", "gemini-2.5-flash", "gpt-4.1", "claude-sonnet-4.5"];
  const modelObject = (id) => ({ id, object: "model", created: 1735689600, owned_by: "simulator" });

  function models(res, headers = {}) {
    json(res, 200, { object: "list", data: MODEL_IDS.map(modelObject) }, headers);
  }

  function model(res, id) {
    if (MODEL_IDS.includes(id)) return json(res, 200, modelObject(id));
    json(res, 404, { error: { message: `simulator: the model ${id} does not exist`, type: "invalid_request_error", param: null, code: "model_not_found" } });
  }

  // The legacy text completion: its headers come with the whole answer, after `delay_ms`.
  async function legacy(req, res, raw) {
    const request = parsed(req, res, raw);
    if (!request) return;
    const { model, rule } = request;
    if (rule.delay_ms) await waitOrClose(rule.delay_ms, req.socket);
    if (res.destroyed || req.socket.destroyed) return;
    if (rule.status && rule.status !== 200) {
      return json(res, rule.status, { error: { message: `simulator: status ${rule.status}`, type: "server_error", param: null, code: null } });
    }
    json(res, 200, {
      id: `cmpl-sim-${Date.now()}`,
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [{ text: " simulated", index: 0, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    }, { "x-sim-model": model, ...rule.headers });
  }

  // A completion request's body, model and rule; `null` once a 400 has answered a body that is
  // not JSON.
  function parsed(req, res, raw) {
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      json(res, 400, { error: { message: "simulator: body is not JSON", type: "invalid_request_error", param: null, code: null } });
      return null;
    }
    const model = typeof body.model === "string" ? body.model : "unknown";
    return { body, model, rule: { ...ruleFor(model), ...steered(req.headers) } };
  }

  // What every generating call does before it answers: read the body, drop or stall or wait as
  // the rules say, and answer a failing status. Returns { body, model, rule }, or null once the
  // request was answered (or dropped).
  async function admitted(req, res, raw) {
    const request = parsed(req, res, raw);
    if (!request) return null;
    const { model, rule } = request;
    if (rule.drop === "before-headers") {
      req.socket.destroy();
      return null;
    }
    if (rule.stall_ms) await waitOrClose(rule.stall_ms, req.socket);
    else if (rule.delay_ms) await waitOrClose(rule.delay_ms, req.socket);
    if (res.destroyed || req.socket.destroyed) return null;

    let status = rule.status ?? 200;
    const nth = (seen.get(model) ?? 0) + 1;
    seen.set(model, nth);
    if (rule.fail_rate && Math.random() < rule.fail_rate) status = rule.fail_status ?? 500;
    if (rule.fail_every && nth % rule.fail_every === 0) status = rule.fail_status ?? 500;
    const asked = Number(req.headers["x-sim-status"]);
    if (Number.isInteger(asked) && asked >= 200 && asked <= 599) status = asked;
    if (status !== 200) {
      const errBody = rule.body ?? { error: { message: `simulated ${status} from ${model}`, type: status >= 500 ? "server_error" : "invalid_request_error", param: null, code: `sim_${status}` } };
      json(res, status, errBody, { "x-sim-model": model, ...rule.headers });
      return null;
    }
    return request;
  }

  // A body that is no answer, sent as `200 application/json` (answer "html" or "error-object");
  // true once sent.
  function noAnswer(res, answer, model, rule) {
    if (answer === "html") {
      const page = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n";
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(page), "x-sim-model": model, ...rule.headers });
      res.end(page);
      return true;
    }
    if (answer === "error-object") {
      json(res, 200, { error: { message: `simulated error object from ${model}`, type: "server_error", param: null, code: "sim_error_object" } }, { "x-sim-model": model, ...rule.headers });
      return true;
    }
    return false;
  }

  async function completion(req, res, raw) {
    const request = await admitted(req, res, raw);
    if (!request) return;
    const { body, model, rule } = request;
    if (isGraderRequest(body)) return json(res, 200, grade(body, model, rule.grader), { "x-sim-model": model, ...rule.headers });

    const id = `chatcmpl-sim-${++counter}`;
    const created = Math.floor(Date.now() / 1000);
    const said = `Hello from ${model}. You said: ${words(lastUserText(body.messages)).slice(0, 12).join(" ") || "(nothing)"}`;
    // JSON mode gets JSON, as a well-behaved model gives it; `answer` (a rule's field or the
    // x-sim-answer header) makes the answer defective the way models' answers are.
    const jsonMode = ["json_object", "json_schema"].includes(body.response_format?.type);
    const answer = req.headers["x-sim-answer"] ?? rule.answer ?? "";
    if (noAnswer(res, answer, model, rule)) return;
    const { reply, finish, refusal } = shaped(said, jsonMode, answer);
    const usage = { prompt_tokens: Math.max(1, words(promptText(body.messages)).length), completion_tokens: words(reply).length };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;

    if (body.stream !== true) {
      return json(res, 200, {
        id, object: "chat.completion", created, model,
        choices: [{ index: 0, message: { role: "assistant", content: refusal ? null : reply, refusal }, finish_reason: finish }],
        usage,
      }, { "x-sim-model": model, ...rule.headers });
    }

    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-sim-model": model, ...rule.headers });
    const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const closed = new Promise((resolve) => res.on("close", resolve));
    if (rule.think_ms) await think(res, rule.think_ms, rule.keepalive_ms);
    if (res.destroyed) return;
    const fault = typeof rule.fault === "string" ? rule.fault : "";
    // "error-after-3" → after("error") === 3
    const after = (name) => (fault.startsWith(`${name}-after-`) ? Number(fault.slice(`${name}-after-`.length)) : undefined);
    const inBandError = () =>
      send({ error: { message: `simulated in-band error from ${model}`, type: "server_error", param: null, code: "sim_stream_error" } });
    if (fault === "error-first") {
      inBandError();
      return res.end();
    }
    if (fault === "end-before-first") {
      res.write(": keep-alive\n\n");
      return res.end();
    }
    if (fault === "done-first" || fault === "done-after-role") {
      if (fault === "done-after-role") send({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
      res.write("data: [DONE]\n\n");
      return res.end();
    }
    if (fault === "break-before-first") {
      res.flushHeaders();
      await sleep(20);
      req.socket.destroy();
      return;
    }
    // Events sent so far: the role chunk is the first.
    let sent = 0;
    const event = (obj) => {
      send(obj);
      sent++;
    };
    const faultAt = async () => {
      if (after("error") === sent) {
        inBandError();
        res.end();
        return true;
      }
      if (after("stall") === sent) {
        await closed; // silent, the connection open, until the other side hangs up
        return true;
      }
      return false;
    };
    // As OpenAI does: with include_usage, every chunk carries "usage": null but the last.
    const base = { id, object: "chat.completion.chunk", created, model, ...(body.stream_options?.include_usage ? { usage: null } : {}) };
    const pieces = words(reply);
    const n = pieces.length ? Math.max(1, Math.min(rule.chunks ?? pieces.length, pieces.length)) : 0;
    event({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
    if (refusal) event({ ...base, choices: [{ index: 0, delta: { refusal }, finish_reason: null }] });
    for (let i = 0; i < n; i++) {
      if (await faultAt()) return;
      if (rule.chunk_delay_ms) await sleep(rule.chunk_delay_ms);
      if (rule.drop === "mid-stream" && i === Math.floor(n / 2)) {
        res.write('data: {"id":"half-an-ev'); // an event cut in the middle
        await sleep(20);
        req.socket.destroy();
        return;
      }
      // Chunk i carries words [i*len/n, (i+1)*len/n): n non-empty pieces.
      const from = Math.floor((i * pieces.length) / n);
      const to = Math.floor(((i + 1) * pieces.length) / n);
      const text = pieces.slice(from, to).join(" ");
      event({ ...base, choices: [{ index: 0, delta: { content: (i ? " " : "") + text }, finish_reason: null }] });
    }
    if (await faultAt()) return;
    send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
    if (body.stream_options?.include_usage) send({ ...base, choices: [], usage });
    res.write("data: [DONE]\n\n");
    res.end();
  }

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const actual = server.address().port;
  const url = `http://${host}:${actual}`;
  if (!quiet) console.log(`upstream simulator listening on ${url}/v1`);

  return {
    url,
    port: actual,
    server,
    setRules: async (r) => {
      rules = r;
      seen = new Map();
    },
    requests: () => log,
    reset: () => {
      rules = {};
      seen = new Map();
      log = [];
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const sim = await startSimulator({
    port: Number(arg("port", 8790)),
    host: arg("host", "127.0.0.1"),
    delayMs: Number(arg("delay-ms", 0)),
    quiet: false,
  });
  const stop = () => sim.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
