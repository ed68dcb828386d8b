// A minimal OpenAI-compatible upstream for benchmarks: fixed JSON or a short SSE stream, optional delay.
// Run alone: node bench/upstream-server.mjs [port] [delayMs]
import http from "node:http";

const COMPLETION = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 0,
  model: "bench",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello from the bench upstream." }, finish_reason: "stop" }],
  usage: { prompt_tokens: 10, completion_tokens: 7, total_tokens: 17 },
});
const CHUNKS = ["Hello", " from", " the", " bench", " upstream."].map(
  (c) =>
    `data: ${JSON.stringify({ id: "chatcmpl-bench", object: "chat.completion.chunk", created: 0, model: "bench", choices: [{ index: 0, delta: { content: c }, finish_reason: null }] })}\n\n`,
);

export function startUpstream({ port = 0, delayMs = 0 } = {}) {
  const server = http.createServer((req, res) => {
    let size = 0;
    let stream = false;
    const chunks = [];
    req.on("data", (c) => {
      size += c.length;
      if (size < 4096) chunks.push(c);
    });
    req.on("end", () => {
      stream = Buffer.concat(chunks).includes('"stream":true');
      const answer = () => {
        if (!stream) {
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(COMPLETION) });
          res.end(COMPLETION);
          return;
        }
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (const c of CHUNKS) res.write(c);
        res.end("data: [DONE]\n\n");
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) =>
    server.listen(port, "127.0.0.1", () =>
      resolve({
        server,
        port: server.address().port,
        url: `http://127.0.0.1:${server.address().port}`,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections();
            server.close(r);
          }),
      }),
    ),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const up = await startUpstream({ port: Number(process.argv[2] ?? 0), delayMs: Number(process.argv[3] ?? 0) });
  console.log(JSON.stringify({ listening: up.url }));
}
