import { Client } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { jsonAnswerOf, startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { chatBody, openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

let gw: TestGateway;
let upstream: FakeUpstream;
let second: FakeUpstream;
let key: string;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  second = await startFakeUpstream();
  const openai = (name: string, model: string, base = upstream.url, extra: Record<string, unknown> = {}) => ({
    model_name: name,
    litellm_params: { model: `openai/${model}`, api_base: `${base}/v1`, api_key: "os.environ/FAKE_UPSTREAM_KEY", ...extra },
  });
  gw = await startTestGateway({
    env: { FAKE_UPSTREAM_KEY: "upstream-secret-123" },
    config: {
      model_list: [
        openai("echo", "echo"),
        openai("rate-limited", "rate-limited"),
        openai("broken", "broken"),
        openai("slow", "slow", upstream.url, { timeout: 0.3 }),
        openai("stream-gated", "stream-gated"),
        openai("stream-split", "stream-split"),
        openai("json-200k", "json-200000"),
        openai("json-3m", "json-3000000"),
        openai("json-gated", "json-gated"),
        openai("balanced", "echo", upstream.url),
        openai("balanced", "echo", second.url),
        { model_name: "refused", litellm_params: { model: "openai/echo", api_base: "http://127.0.0.1:1/v1" } },
        { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
      ],
    },
  });
  key = (await gw.newKey()).key;
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await second?.close();
});

describe("the proxy relays to an OpenAI-compatible upstream", () => {
  it("sends the upstream model name and the upstream key, never the client's key", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("echo", { temperature: 0.2, mock_response: "x" }) });
    expect(res.status).toBe(200);
    expect(res.body.echo.path).toBe("/v1/chat/completions");
    expect(res.body.echo.authorization).toBe("Bearer upstream-secret-123");
    expect(res.body.echo.body).toEqual({ model: "echo", messages: [{ role: "user", content: "Say hello" }], temperature: 0.2 });
    expect(JSON.stringify(gw.logs.lines)).not.toContain("upstream-secret-123");
    expect(JSON.stringify(gw.logs.lines)).not.toContain(key);
  });

  it("authenticates each request of one keep-alive connection by its own bearer, whatever the one before sent", async () => {
    // One connection (an undici Client holds one): the bearer's digest is kept on it between requests.
    const client = new Client(gw.url, { pipelining: 1 });
    const other = (await gw.newKey({ models: ["mock-gpt"] })).key;
    const post = async (bearer: string, model: string) => {
      const res = await client.request({
        path: "/v1/chat/completions",
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify(chatBody(model)),
      });
      await res.body.dump();
      return res.statusCode;
    };
    try {
      expect(await post(key, "echo")).toBe(200);
      expect(await post("sk-not-a-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "echo")).toBe(401);
      expect(await post(other, "echo")).toBe(403); // the other key may use mock-gpt only
      expect(await post(other, "mock-gpt")).toBe(200);
      expect(await post(key, "echo")).toBe(200);
      await gw.admin("/key/block", { key: other });
      expect(await post(other, "mock-gpt")).toBe(401);
    } finally {
      await client.close();
    }
  });

  it("serves /chat/completions, /v1/completions and /v1/embeddings too", async () => {
    expect((await gw.call("/chat/completions", { key, body: chatBody("echo") })).status).toBe(200);
    await gw.call("/v1/completions", { key, body: { model: "echo", prompt: "hi" } });
    expect(upstream.requests.at(-1)!.path).toBe("/v1/completions");
    await gw.call("/v1/embeddings", { key, body: { model: "echo", input: "hi" } });
    expect(upstream.requests.at(-1)!.path).toBe("/v1/embeddings");
  });

  it("load-balances deployments that share a model_name", async () => {
    const before = [upstream.requests.length, second.requests.length];
    for (let i = 0; i < 6; i++) expect((await gw.call("/v1/chat/completions", { key, body: chatBody("balanced") })).status).toBe(200);
    expect(upstream.requests.length - before[0]!).toBe(3);
    expect(second.requests.length - before[1]!).toBe(3);
  });

  it("relays an upstream error with its status and OpenAI body", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("rate-limited") });
    expect(res.status).toBe(429);
    expect(openAIError(res.body)).toMatchObject({ message: "Rate limit reached for requests", code: "rate_limit_exceeded" });
  });

  it("answers an upstream 5xx with a 502 in the OpenAI shape, without echoing upstream's body", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("broken") });
    expect(res.status).toBe(502);
    const e = openAIError(res.body);
    expect(e.message).not.toContain("upstream exploded");
    expect(e.code).toBe("upstream_bad_response");
  });

  it("maps an upstream read timeout to 504 and an unreachable upstream to 502", async () => {
    const slow = await gw.call("/v1/chat/completions", { key, body: chatBody("slow") });
    expect(slow.status).toBe(504);
    expect(openAIError(slow.body)).toMatchObject({ type: "timeout_error", code: "upstream_timeout" });
    const refused = await gw.call("/v1/chat/completions", { key, body: chatBody("refused") });
    expect(refused.status).toBe(502);
    expect(openAIError(refused.body).code).toBe("upstream_unreachable");
  });
});

describe("JSON answers", () => {
  // Up to 1 MiB an answer is sent in one write with its length (read whole from upstream); past it, as it comes.
  it("an answer in many upstream chunks is sent whole, with its length, byte for byte", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("json-200k") });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("200000");
    expect(res.text).toBe(jsonAnswerOf(200_000));
  });

  it("an answer past 1 MiB is relayed as it comes, byte for byte", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("json-3m") });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBeNull();
    expect(res.headers.get("gatehouse-attempts")).toBe("1");
    expect(res.text).toBe(jsonAnswerOf(3_000_000));
  });

  it("a client that leaves while the answer is read aborts the upstream call", async () => {
    const aborted = upstream.abortedRequests;
    const controller = new AbortController();
    const answer = fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("json-gated")),
      signal: controller.signal,
    }).catch(() => "left");
    await waitFor(() => upstream.requests.at(-1)?.body.model === "json-gated", { what: "the upstream call" });
    controller.abort();
    expect(await answer).toBe("left");
    await waitFor(() => upstream.abortedRequests > aborted, { what: "the upstream request to be aborted" });
    upstream.releaseNext(); // the upstream's gate, so that the tests after this one get their own releases
    expect((await gw.call("/v1/chat/completions", { key, body: chatBody("mock-gpt") })).status).toBe(200);
  });
});

describe("streaming", () => {
  it("relays SSE chunk by chunk, without buffering", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("stream-gated", { stream: true })),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    // The upstream holds chunk 2 until we release it: we can only see chunk 1 if nothing buffers it.
    for (const part of ["part0", "part1", "part2"]) {
      while (!seen.includes(part)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${part}`);
        seen += decoder.decode(value, { stream: true });
      }
      if (part !== "part2") {
        expect(seen).not.toContain(part === "part0" ? "part1" : "part2");
        upstream.releaseNext();
      }
    }
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += decoder.decode(value, { stream: true });
    }
    expect(seen.trim().endsWith("data: [DONE]")).toBe(true);
  });

  it("sends a stream's head at its first chunk, even one that holds no whole frame", async () => {
    const answered = fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("stream-split", { stream: true })),
    });
    // The upstream holds the rest of its first frame until released: the head must arrive without it.
    let deadline: NodeJS.Timeout | undefined;
    const res = await Promise.race([
      answered,
      new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error("no head within 4 s of the stream's first chunk")), 4_000);
      }),
    ]).finally(() => clearTimeout(deadline));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    upstream.releaseNext();
    const text = await res.text();
    expect(text).toContain('"content":"whole"');
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
  });

  it("a client that disconnects mid-stream aborts the upstream call", async () => {
    const aborted = upstream.abortedRequests;
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("stream-gated", { stream: true })),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read(); // part0 arrived; upstream now waits for a release that never comes
    controller.abort();
    await waitFor(() => upstream.abortedRequests > aborted, { what: "the upstream request to be aborted" });
    expect((await gw.call("/v1/chat/completions", { key, body: chatBody("mock-gpt") })).status).toBe(200);
  });

  it("streams the mock provider with usage when asked", async () => {
    const res = await gw.call("/v1/chat/completions", {
      key,
      body: chatBody("mock-gpt", { stream: true, stream_options: { include_usage: true }, mock_response: "alpha beta gamma" }),
    });
    expect(res.status).toBe(200);
    const events = res.text.split("\n\n").filter(Boolean);
    const content = events
      .filter((e) => e !== "data: [DONE]")
      .map((e) => JSON.parse(e.slice(6)))
      .map((c) => c.choices[0]?.delta?.content ?? "")
      .join("");
    expect(content).toBe("alpha beta gamma");
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(JSON.parse(events.at(-2)!.slice(6)).usage.completion_tokens).toBeGreaterThan(0);
  });
});
