// The stats batches the benchmarks send: what an isolate serving ~100 requests a second sends
// its controller each second (one minute, both environments, latency histograms with dozens of
// buckets), from a seeded generator so that every run sends the same.

/** A deterministic xorshift RNG, so every run posts the same batches. */
export function rng(seed) {
  let x = BigInt(seed) || 1n;
  return () => {
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    return Number(x % 1000000n) / 1e6;
  };
}

/** The stored histogram form for `n` latencies spread over ~300–3000 ms (log-linear buckets). */
export function histogram(n, rand) {
  const counts = new Map();
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const ms = Math.round(300 * 10 ** rand());
    sum += ms;
    const exp = Math.floor(Math.log2(ms));
    const shift = exp - 5;
    const bucket = 32 + shift * 32 + ((ms >> shift) - 32);
    counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  }
  return { n, sum, b: [...counts.entries()].sort((a, b) => a[0] - b[0]) };
}

export function envStats(n, rand) {
  return {
    requests: n,
    errors: { server_error: Math.round(n * 0.01), rate_limited: 0, timeout: 0, connection: 0, upstream_other: 0, interrupted: 0 },
    client_errors: 0,
    fallbacks: 0,
    prompt_tokens: n * 200,
    completion_tokens: n * 400,
    cost_usd: n * 0.0005,
    first_byte: histogram(n, rand),
    total: histogram(n, rand),
  };
}
