// A minimal upstream for benchmarks: OpenAI-compatible, and Anthropic's Messages API at /v1/messages, each a fixed
// JSON answer or a short stream of the same text, with an optional delay.
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
const chunk = (delta, finish = null) => ({
  id: "chatcmpl-bench",
  object: "chat.completion.chunk",
  created: 0,
  model: "bench",
  choices: [{ index: 0, delta, finish_reason: finish }],
});
// As OpenAI streams: the words, a last chunk with the finish reason, and the usage chunk when asked for.
const CHUNKS = [...["Hello", " from", " the", " bench", " upstream."].map((c) => chunk({ content: c })), chunk({}, "stop")].map((c) => `data: ${JSON.stringify(c)}\n\n`);
const USAGE_CHUNK = `data: ${JSON.stringify({ ...chunk({}), choices: [], usage: { prompt_tokens: 10, completion_tokens: 7, total_tokens: 17 } })}\n\n`;

// The same five words as Anthropic streams them: message_start, a text block, message_delta, message_stop.
const ANTHROPIC_MESSAGE = JSON.stringify({
  id: "msg_bench",
  type: "message",
  role: "assistant",
  model: "bench",
  content: [{ type: "text", text: "Hello from the bench upstream." }],
  stop_reason: "end_turn",
  stop_sequence: null,
  usage: { input_tokens: 10, output_tokens: 7 },
});
const ANTHROPIC_EVENTS = [
  { type: "message_start", message: { id: "msg_bench", type: "message", role: "assistant", model: "bench", content: [], usage: { input_tokens: 10, output_tokens: 1 } } },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  ...["Hello", " from", " the", " bench", " upstream."].map((text) => ({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text } })),
  { type: "content_block_stop", index: 0 },
  { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 7 } },
  { type: "message_stop" },
].map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);

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
        const anthropic = req.url === "/v1/messages";
        if (!stream) {
          const body = anthropic ? ANTHROPIC_MESSAGE : COMPLETION;
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
          res.end(body);
          return;
        }
        res.writeHead(200, { "content-type": "text/event-stream" });
        if (anthropic) {
          for (const e of ANTHROPIC_EVENTS) res.write(e);
          return void res.end();
        }
        for (const c of CHUNKS) res.write(c);
        if (Buffer.concat(chunks).includes('"include_usage":true')) res.write(USAGE_CHUNK);
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
