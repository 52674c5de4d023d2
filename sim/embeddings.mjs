// The simulator's embeddings API (POST /v1/embeddings), with the same rules and failure modes
// by model as chat (status, fail_rate, fail_every, delay_ms, stall_ms, drop, answer "html" and
// "error-object"), and the ways an embedding model's answer goes wrong:
//   answer "mixed-dims"   the second vector of an answer is one shorter than the first
//   answer "wrong-dims"   vectors one longer than the `dimensions` asked (or the model's own)
//   answer "empty"        `data: []`
//   answer "length-wobble" every other answer's vectors one longer than the others (each
//                         answer of one length, but not every answer the same)
// Vectors are deterministic: the same model and input give the same vector, two models give
// different ones. Their length is the request's `dimensions`, else the rule's `dimensions`,
// else 1536 for a model whose name holds "small", 3072 for "large", 256 otherwise.
// `encoding_format: "base64"` (what OpenAI's SDKs ask for by default) sends each vector as
// little-endian float32s in base64, as OpenAI does.

/** A 32-bit FNV-1a hash of a string. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A deterministic unit-ish vector of `n` floats for `model` and `text`. */
export function vectorOf(model, text, n) {
  let state = hash(`${model}\u0000${text}`) || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = (state / 0xffffffff - 0.5) / Math.sqrt(n / 12);
  }
  return out;
}

function defaultLength(model) {
  if (model.includes("small")) return 1536;
  if (model.includes("large")) return 3072;
  return 256;
}

function inputs(input) {
  if (typeof input === "string") return [input];
  if (Array.isArray(input)) return input.map((x) => (typeof x === "string" ? x : JSON.stringify(x)));
  return [];
}

export function embeddingsApi({ admitted, noAnswer, json, words }) {
  const answered = new Map(); // answers per model, for "length-wobble"
  return async function embeddings(req, res, raw) {
    const request = await admitted(req, res, raw);
    if (!request) return;
    const { body, model, rule } = request;
    const answer = req.headers["x-sim-answer"] ?? rule.answer ?? "";
    if (noAnswer(res, answer, model, rule)) return;
    const texts = inputs(body.input);
    if (texts.length === 0) {
      return json(res, 400, { error: { message: "simulator: `input` must be a string or an array", type: "invalid_request_error", param: "input", code: null } });
    }
    let length = Number.isInteger(body.dimensions) ? body.dimensions : rule.dimensions ?? defaultLength(model);
    if (answer === "wrong-dims") length += 1;
    const nth = (answered.get(model) ?? 0) + 1;
    answered.set(model, nth);
    if (answer === "length-wobble" && nth % 2 === 0) length += 1;
    const base64 = body.encoding_format === "base64";
    const data = answer === "empty" ? [] : texts.map((text, index) => {
      const n = answer === "mixed-dims" && index === 1 ? length - 1 : length;
      const v = vectorOf(model, text, n);
      const embedding = base64 ? Buffer.from(v.buffer).toString("base64") : Array.from(v);
      return { object: "embedding", index, embedding };
    });
    const tokens = texts.reduce((sum, t) => sum + Math.max(1, words(t).length), 0);
    json(res, 200, { object: "list", data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } }, { "x-sim-model": model, ...rule.headers });
  };
}
