// Starts Portkey's gateway (node start.mjs --port=N --headless) with one work-around:
// @hono/node-server keeps the upstream fetch's immutable Headers on a streamed Response,
// and the gateway then appends its x-portkey-* headers to them, so every streamed chat
// completion fails with "TypeError: immutable" on Node 20 (Portkey-AI/gateway issues 1389
// and 1550). A streamed upstream answer gets a copy of its headers here; nothing else changes.
const upstreamFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const response = await upstreamFetch(...args);
  if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    return response;
  }
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};
await import("@portkey-ai/gateway/build/start-server.js");
