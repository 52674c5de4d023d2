// The simulator's Responses API (POST /v1/responses, GET and DELETE /v1/responses/{id},
// POST /v1/responses/{id}/cancel, GET /v1/responses/{id}/input_items), with the same rules
// and failure modes by model as chat, and the Responses API's own ways to fail.
//
// Streams follow OpenAI's event sequence: response.created, response.in_progress,
// response.output_item.added, response.content_part.added, response.output_text.delta…, the
// .done events, then response.completed; every event has `event:` and a sequence_number.
// Faults (the rule's `fault` or `x-sim-fault`, on streams):
//   "error-first"          a flat error event ({"type":"error","code","message"}) first
//   "error-nested-first"   a nested one ({"type":"error","error":{...}}) first
//   "failed-after-created" created and in_progress, then response.failed
//   "incomplete-empty"     created and in_progress, then response.incomplete with no output
//   "error-after-N"        N events, then a flat error event, then the end
//   "stall-after-N"        N events, then silence until the other side hangs up
// Non-streamed, `answer` "failed" answers a response whose status is failed.
// Responses it made are kept (the last 2000) for GET and `previous_response_id`; a follow-up
// answers "Turn N" with N the length of the conversation so far.

const MAX_STORED = 2000;

/** The text of a Responses `input`: a string, or the last user message's text. */
function inputText(input) {
  if (typeof input === "string") return input;
  if (!Array.isArray(input)) return "";
  const user = input.filter((m) => m?.role === "user").at(-1);
  if (typeof user?.content === "string") return user.content;
  return (user?.content ?? []).map((p) => p?.text ?? "").join(" ");
}

/**
 * The Responses API on top of the simulator's shared parts: `admitted` (rules, delays, failing
 * statuses), `noAnswer` (bodies that are no answer), `json`, `shaped` (the answer's text and
 * defects), `think` and `words`. Returns { create, stored } handlers.
 */
export function responsesApi({ admitted, noAnswer, json, shaped, think, words, sleep }) {
  const store = new Map();
  let counter = 0;

  function notFound(res, id, param = null) {
    const code = param ? "previous_response_not_found" : "not_found";
    json(res, 404, { error: { message: `Response with id '${id}' not found.`, type: "invalid_request_error", param, code } });
  }

  function responseObject(id, model, body, { status, output, usage, error = null, incomplete = null }) {
    return {
      id, object: "response", created_at: Math.floor(Date.now() / 1000), status, background: false, error,
      incomplete_details: incomplete, instructions: body.instructions ?? null, max_output_tokens: body.max_output_tokens ?? null,
      model, output, parallel_tool_calls: true, previous_response_id: body.previous_response_id ?? null,
      reasoning: { effort: null, summary: null }, store: body.store ?? true, temperature: body.temperature ?? 1,
      text: body.text ?? { format: { type: "text" } }, tool_choice: body.tool_choice ?? "auto", tools: body.tools ?? [],
      top_p: 1, truncation: "disabled", usage, user: body.user ?? null, metadata: body.metadata ?? {},
    };
  }

  async function create(req, res, raw) {
    const request = await admitted(req, res, raw);
    if (!request) return;
    const { body, model, rule } = request;
    const answer = req.headers["x-sim-answer"] ?? rule.answer ?? "";
    if (noAnswer(res, answer, model, rule)) return;
    const previous = body.previous_response_id;
    if (previous !== undefined && !store.has(previous)) return notFound(res, previous, "previous_response_id");
    const turn = previous === undefined ? 1 : store.get(previous).turn + 1;
    const id = `resp_sim${++counter}${Date.now().toString(16)}`;
    const said = `Hello from ${model}. Turn ${turn}. You said: ${words(inputText(body.input)).slice(0, 12).join(" ") || "(nothing)"}`;
    const jsonMode = ["json_object", "json_schema"].includes(body.text?.format?.type);
    const { reply, finish, refusal } = shaped(said, jsonMode, answer);
    const msgId = `msg_sim${counter}`;
    const part = refusal ? { type: "refusal", refusal } : { type: "output_text", text: reply, annotations: [] };
    const item = { id: msgId, type: "message", status: "completed", role: "assistant", content: [part] };
    const usage = {
      input_tokens: Math.max(1, words(inputText(body.input)).length), input_tokens_details: { cached_tokens: 0 },
      output_tokens: words(reply).length, output_tokens_details: { reasoning_tokens: 0 },
    };
    usage.total_tokens = usage.input_tokens + usage.output_tokens;
    const incomplete = finish === "stop" ? null : { reason: finish === "length" ? "max_output_tokens" : "content_filter" };
    const status = answer === "failed" ? "failed" : incomplete ? "incomplete" : "completed";
    const error = status === "failed" ? { code: "server_error", message: `simulated failed response from ${model}` } : null;
    const done = responseObject(id, model, body, { status, output: status === "failed" ? [] : [item], usage, error, incomplete });
    // Kept once the answer was given whole, as the upstream keeps what it made.
    const keep = () => {
      if (status === "failed") return;
      store.set(id, { turn, response: done, input: body.input });
      if (store.size > MAX_STORED) store.delete(store.keys().next().value);
    };
    if (body.stream !== true) return keep(), json(res, 200, done, { "x-sim-model": model, ...rule.headers });
    await stream(req, res, { model, rule, done, item, part, reply, refusal, keep });
  }

  async function stream(req, res, { model, rule, done, item, part, reply, refusal, keep }) {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-sim-model": model, ...rule.headers });
    const closed = new Promise((resolve) => res.on("close", resolve));
    if (rule.think_ms) await think(res, rule.think_ms, rule.keepalive_ms);
    if (res.destroyed) return;
    let seq = 0;
    let sent = 0;
    const send = (obj) => {
      res.write(`event: ${obj.type}\ndata: ${JSON.stringify({ ...obj, sequence_number: seq++ })}\n\n`);
      sent++;
    };
    const fault = String(req.headers["x-sim-fault"] ?? rule.fault ?? "");
    const after = (name) => (fault.startsWith(`${name}-after-`) ? Number(fault.slice(`${name}-after-`.length)) : undefined);
    const flatError = () => send({ type: "error", code: "server_error", message: `simulated in-band error from ${model}`, param: null });
    const opening = { ...done, status: "in_progress", output: [], usage: null, error: null, incomplete_details: null };
    if (fault === "error-first") return flatError(), res.end();
    if (fault === "error-nested-first") {
      send({ type: "error", error: { type: "server_error", code: "server_error", message: `simulated nested error from ${model}`, param: null } });
      return res.end();
    }
    send({ type: "response.created", response: opening });
    send({ type: "response.in_progress", response: opening });
    if (fault === "failed-after-created") {
      send({ type: "response.failed", response: { ...opening, status: "failed", error: { code: "server_error", message: `simulated late failure from ${model}` } } });
      return res.end();
    }
    if (fault === "incomplete-empty") {
      send({ type: "response.incomplete", response: { ...opening, status: "incomplete", incomplete_details: { reason: "max_output_tokens" } } });
      return res.end();
    }
    const faultAt = async () => {
      if (after("error") === sent) return flatError(), res.end(), true;
      if (after("stall") === sent) return await closed, true;
      return false;
    };
    const base = { item_id: item.id, output_index: 0, content_index: 0 };
    send({ type: "response.output_item.added", output_index: 0, item: { ...item, status: "in_progress", content: [] } });
    send({ type: "response.content_part.added", ...base, part: refusal ? { type: "refusal", refusal: "" } : { type: "output_text", text: "", annotations: [] } });
    const pieces = refusal ? [refusal] : words(reply);
    const n = pieces.length ? Math.max(1, Math.min(rule.chunks ?? pieces.length, pieces.length)) : 0;
    for (let i = 0; i < n; i++) {
      if (await faultAt()) return;
      if (rule.chunk_delay_ms) await sleep(rule.chunk_delay_ms);
      const text = pieces.slice(Math.floor((i * pieces.length) / n), Math.floor(((i + 1) * pieces.length) / n)).join(" ");
      send({ type: refusal ? "response.refusal.delta" : "response.output_text.delta", ...base, delta: (i ? " " : "") + text, ...(refusal ? {} : { logprobs: [] }) });
    }
    if (await faultAt()) return;
    if (refusal) send({ type: "response.refusal.done", ...base, refusal });
    else send({ type: "response.output_text.done", ...base, text: reply, logprobs: [] });
    send({ type: "response.content_part.done", ...base, part });
    send({ type: "response.output_item.done", output_index: 0, item });
    keep();
    send({ type: done.status === "incomplete" ? "response.incomplete" : "response.completed", response: done });
    res.end();
  }

  /** GET, DELETE /v1/responses/{id}, POST …/cancel, GET …/input_items; true when it answered. */
  function stored(req, res, path) {
    const m = path.match(/^\/v1\/responses\/([^/]+)(\/cancel|\/input_items)?$/);
    if (!m) return false;
    const id = decodeURIComponent(m[1]);
    const kept = store.get(id);
    const what = `${req.method} ${m[2] ?? ""}`;
    if (!kept) return notFound(res, id), true;
    if (what === "GET ") json(res, 200, kept.response);
    else if (what === "DELETE ") store.delete(id), json(res, 200, { id, object: "response", deleted: true });
    else if (what === "POST /cancel") json(res, 400, { error: { message: "Only background responses can be cancelled.", type: "invalid_request_error", param: null, code: null } });
    else if (what === "GET /input_items") {
      const items = typeof kept.input === "string" ? [{ type: "message", role: "user", content: [{ type: "input_text", text: kept.input }] }] : kept.input ?? [];
      json(res, 200, { object: "list", data: items, first_id: null, last_id: null, has_more: false });
    } else return false;
    return true;
  }

  return { create, stored };
}
