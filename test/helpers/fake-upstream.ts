import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A real HTTP server that speaks enough of the OpenAI API to test the proxy: what it does is chosen
 * by the upstream model name the gateway sends, so one server serves every scenario of a test file.
 *  - "echo": 200 with the request it received (headers and body)
 *  - "rate-limited": 429 with an OpenAI error body and Retry-After: 7
 *  - "broken": 500 with a non-JSON body
 *  - "html-error": 503 with an HTML page
 *  - "not-json": 200 that says it is JSON and is not
 *  - "unauthorized": 401, OpenAI's "Incorrect API key" message quoting part of the upstream key
 *  - "redirect": 302 to somewhere else
 *  - "bad-request": 400 with an OpenAI error body about the request
 *  - "stream-crlf": SSE framed with \r\n\r\n, a usage chunk at the end; to a request for a stream, the first frame,
 *    then the rest only when `releaseNext()` is called (the gateway's health check, not streamed, gets it all at once)
 *  - "slow": sends headers only after `slowMs`
 *  - "stream-gated": SSE, one chunk, then the next only when `releaseNext()` is called
 *  - "stream-split": SSE whose first chunk is half a frame; the rest only when `releaseNext()` is called
 *  - "delay-<ms>": the "echo" answer (usage 1 + 1 tokens) after <ms>, so requests overlap in flight
 *  - "json-<bytes>": a chat answer of about <bytes> (jsonAnswerOf), written 16 KiB at a time, one write a loop turn
 *  - "json-gated": the first half of a chat answer, then the rest only when `releaseNext()` is called
 *  - "stream-dies": a 200 SSE head, then the connection closed before any chunk
 *  - "stream-<n>": SSE, n chunks of about 1 KiB each written at once, a usage chunk, [DONE]
 */
export interface FakeUpstream {
  url: string;
  requests: Array<{ path: string; headers: http.IncomingHttpHeaders; body: any }>;
  /** Requests whose client side (the gateway) went away before the response ended. */
  abortedRequests: number;
  releaseNext(): void;
  slowMs: number;
  close(): Promise<void>;
}

/** A chat answer of `bytes` bytes (its content padded to the length), usage last as OpenAI writes it. */
export function jsonAnswerOf(bytes: number): string {
  const shell = (content: string) =>
    JSON.stringify({
      id: "chatcmpl-long",
      object: "chat.completion",
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
    });
  return shell("x".repeat(Math.max(0, bytes - shell("").length)));
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const gates: Array<() => void> = [];
  let pendingReleases = 0;
  const state: FakeUpstream = {
    url: "",
    requests: [],
    abortedRequests: 0,
    slowMs: 2_000,
    releaseNext() {
      const gate = gates.shift();
      if (gate) gate();
      else pendingReleases++;
    },
    close: async () => {},
  };
  const waitGate = () =>
    new Promise<void>((resolve) => {
      if (pendingReleases > 0) {
        pendingReleases--;
        resolve();
      } else gates.push(resolve);
    });

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
    state.requests.push({ path: req.url ?? "", headers: req.headers, body });
    res.on("close", () => {
      if (!res.writableFinished) state.abortedRequests++;
    });
    switch (body.model) {
      case "rate-limited":
        res.writeHead(429, { "content-type": "application/json", "retry-after": "7" });
        res.end(JSON.stringify({ error: { message: "Rate limit reached for requests", type: "requests", param: null, code: "rate_limit_exceeded" } }));
        return;
      case "broken":
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("upstream exploded");
        return;
      case "html-error":
        res.writeHead(503, { "content-type": "text/html" });
        res.end("<html><body><h1>503 Service Temporarily Unavailable</h1><script>track()</script></body></html>");
        return;
      case "not-json":
        res.writeHead(200, { "content-type": "application/json" });
        res.end("this is not JSON");
        return;
      case "unauthorized":
        res.writeHead(401, { "content-type": "application/json" });
        res.end(
          JSON.stringify({ error: { message: "Incorrect API key provided: sk-upstr*****************XyZ9.", type: "invalid_request_error", param: null, code: "invalid_api_key" } }),
        );
        return;
      case "redirect":
        res.writeHead(302, { location: "https://example.invalid/elsewhere" });
        res.end();
        return;
      case "bad-request":
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "'temperature' must be at most 2", type: "invalid_request_error", param: "temperature", code: "invalid_value" } }));
        return;
      case "stream-crlf": {
        res.writeHead(200, { "content-type": "text/event-stream" });
        const chunk = (o: object) => `data: ${JSON.stringify(o)}\r\n\r\n`;
        res.write(chunk({ id: "crlf", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "hello " }, finish_reason: null }] }));
        if (body.stream === true) await waitGate();
        if (res.destroyed) return;
        res.write(chunk({ id: "crlf", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "world" }, finish_reason: "stop" }] }));
        res.write(chunk({ id: "crlf", object: "chat.completion.chunk", choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }));
        res.end("data: [DONE]\r\n\r\n");
        return;
      }
      case "slow":
        await new Promise((r) => setTimeout(r, state.slowMs));
        if (res.destroyed) return;
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: "slow", object: "chat.completion", choices: [] }));
        return;
      case "stream-gated": {
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (let i = 0; i < 3; i++) {
          if (i > 0) await waitGate();
          if (res.destroyed) return;
          res.write(`data: ${JSON.stringify({ id: "gated", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: `part${i} ` }, finish_reason: null }] })}\n\n`);
        }
        res.end("data: [DONE]\n\n");
        return;
      }
      case "stream-split": {
        res.writeHead(200, { "content-type": "text/event-stream" });
        const frame = `data: ${JSON.stringify({ id: "split", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "whole" }, finish_reason: "stop" }] })}\n\n`;
        res.write(frame.slice(0, 20));
        await waitGate();
        if (res.destroyed) return;
        res.end(`${frame.slice(20)}data: [DONE]\n\n`);
        return;
      }
      case "stream-dies":
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.flushHeaders();
        await new Promise((r) => setImmediate(r));
        res.destroy();
        return;
      case "json-gated": {
        const answer = jsonAnswerOf(64 * 1024);
        res.writeHead(200, { "content-type": "application/json", "content-length": answer.length });
        res.write(answer.slice(0, answer.length / 2));
        await waitGate();
        if (res.destroyed) return;
        res.end(answer.slice(answer.length / 2));
        return;
      }
      default:
        if (typeof body.model === "string" && /^stream-\d+$/.test(body.model)) {
          res.writeHead(200, { "content-type": "text/event-stream" });
          const piece = "y".repeat(1000);
          for (let i = 0; i < Number(body.model.slice(7)); i++)
            res.write(
              `data: ${JSON.stringify({ id: "many", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: `${i}:${piece}` }, finish_reason: null }] })}\n\n`,
            );
          res.write(
            `data: ${JSON.stringify({ id: "many", object: "chat.completion.chunk", choices: [], usage: { prompt_tokens: 2, completion_tokens: 7, total_tokens: 9 } })}\n\n`,
          );
          res.end("data: [DONE]\n\n");
          return;
        }
        if (typeof body.model === "string" && body.model.startsWith("json-")) {
          const answer = jsonAnswerOf(Number(body.model.slice(5)));
          res.writeHead(200, { "content-type": "application/json" });
          for (let at = 0; at < answer.length && !res.destroyed; at += 16 * 1024) {
            res.write(answer.slice(at, at + 16 * 1024));
            await new Promise((r) => setImmediate(r));
          }
          res.end();
          return;
        }
        if (typeof body.model === "string" && body.model.startsWith("delay-")) await new Promise((r) => setTimeout(r, Number(body.model.slice(6))));
        if (res.destroyed) return;
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "chatcmpl-echo",
            object: "chat.completion",
            created: 0,
            model: body.model,
            choices: [{ index: 0, message: { role: "assistant", content: "echo" }, finish_reason: "stop" }],
            usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
            echo: { path: req.url, authorization: req.headers.authorization ?? null, body },
          }),
        );
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
