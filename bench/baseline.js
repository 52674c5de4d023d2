// The benchmark's baseline Worker: the least a Worker can do in front of the upstream.
// It rewrites the request URL's origin to the upstream's and forwards method, headers and body
// as they are, returning the upstream response untouched (streams included). bench/run.mjs
// runs it in Miniflare exactly like the router, so their difference is the router's own cost.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const upstream = new URL(env.UPSTREAM_BASE_URL);
    url.protocol = upstream.protocol;
    url.host = upstream.host; // host includes the port
    return fetch(new Request(url, request));
  },
};
