import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { type FakeUpstream, startFakeUpstream } from "./helpers/fake-upstream.js";
import { waitFor } from "./helpers/services.js";

// This file runs twice (test/vitest.config.ts): with the straight path on (the default) and with every request sent
// the general way. Each test holds in both; the metric says which way each attempt went.
const WAY = process.env.GATEHOUSE_SERVER_STRAIGHT_PATH === "off" ? "general" : "straight";

let upstream: FakeUpstream;
let gw: TestGateway;
let key: string;

/** Attempts so far by way, from /metrics. */
async function attempts(): Promise<{ straight: number; general: number }> {
  const text = (await gw.admin("/metrics")).text;
  const read = (way: string) => Number(new RegExp(`^gatehouse_relay_attempts_total\\{way="${way}"\\} (\\d+)`, "m").exec(text)?.[1] ?? 0);
  return { straight: read("straight"), general: read("general") };
}

/** A chat call; the difference in attempts by way it made. */
async function chat(body: Record<string, unknown>, bearer = key): Promise<{ status: number; text: string; headers: Headers; ways: { straight: number; general: number } }> {
  const before = await attempts();
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
  });
  const text = await res.text();
  const after = await attempts();
  return { status: res.status, text, headers: res.headers, ways: { straight: after.straight - before.straight, general: after.general - before.general } };
}

beforeAll(async () => {
  upstream = await startFakeUpstream();
  const v1 = `${upstream.url}/v1`;
  const priced = { input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 };
  gw = await startTestGateway({
    config: {
      model_list: [
        { model_name: "echo", litellm_params: { model: "openai/echo", api_base: v1, api_key: "k", ...priced } },
        { model_name: "mock", litellm_params: { model: "mock/mock-gpt", ...priced } },
        // The first deployment's stream dies before its first chunk, the second answers: a retry, not a broken stream.
        { model_name: "dies-then-works", litellm_params: { model: "openai/stream-dies", api_base: `${v1}/a`, api_key: "k", order: 1 } },
        { model_name: "dies-then-works", litellm_params: { model: "openai/stream-3", api_base: `${v1}/b`, api_key: "k", order: 2 } },
        { model_name: "refuses-then-works", litellm_params: { model: "openai/broken", api_base: `${v1}/c`, api_key: "k", order: 1 } },
        { model_name: "refuses-then-works", litellm_params: { model: "openai/echo", api_base: `${v1}/d`, api_key: "k", order: 2 } },
        { model_name: "rate-limited", litellm_params: { model: "openai/rate-limited", api_base: v1, api_key: "k" } },
        { model_name: "long-stream", litellm_params: { model: "openai/stream-3000", api_base: v1, api_key: "k", ...priced } },
      ],
      router_settings: { num_retries: 1 },
    },
  });
  key = (await gw.newKey()).key;
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

describe(`the relay's two ways (this run: ${WAY})`, () => {
  it("a request no level limits, to a deployment that speaks its route, goes straight (request-level routing too: retries are the loop's); a limited key's and a translated one go the general way", async () => {
    const plain = await chat({ model: "echo" });
    expect(plain.status).toBe(200);
    expect(plain.ways).toEqual(WAY === "straight" ? { straight: 1, general: 0 } : { straight: 0, general: 1 });
    const mock = await chat({ model: "mock", stream: true });
    expect(mock.status).toBe(200);
    expect(mock.ways).toEqual(WAY === "straight" ? { straight: 1, general: 0 } : { straight: 0, general: 1 });

    const limited = (await gw.newKey({ rpm_limit: 1000 })).key;
    expect((await chat({ model: "echo" }, limited)).ways).toEqual({ straight: 0, general: 1 });
    const routed = await chat({ model: "echo", num_retries: 0 });
    expect(routed.status).toBe(200);
    expect(JSON.parse(routed.text).echo.body.num_retries).toBeUndefined();
    expect(routed.ways).toEqual(WAY === "straight" ? { straight: 1, general: 0 } : { straight: 0, general: 1 });

    const before = await attempts();
    const messages = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "echo", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(messages.status).toBe(200);
    await messages.text();
    const after = await attempts();
    expect(after.general - before.general).toBe(1);
    expect(after.straight - before.straight).toBe(0);
  });

  it("a stream that dies after its head, before its first chunk, is retried on the next deployment, not told as a broken stream", async () => {
    const res = await chat({ model: "dies-then-works", stream: true });
    expect(res.status).toBe(200);
    expect(res.text).toContain("data: [DONE]");
    expect(res.text).not.toContain('"error"');
    expect(res.headers.get("x-litellm-attempted-retries")).toBe("1");
    // Both attempts went the way of this run: the relay's loop retried the failed straight attempt.
    expect(res.ways).toEqual(WAY === "straight" ? { straight: 2, general: 0 } : { straight: 0, general: 2 });
  });

  it("an upstream refusal before the answer is retried elsewhere, and a 429 is told with its Retry-After", async () => {
    const res = await chat({ model: "refuses-then-works" });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).choices[0].message.content).toBe("echo");
    expect(res.headers.get("x-litellm-attempted-retries")).toBe("1");

    const limited = await chat({ model: "rate-limited" });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("7");
    expect(JSON.parse(limited.text).error).toMatchObject({ message: "Rate limit reached for requests", code: "rate_limit_exceeded" });
  });

  it("a long stream read slowly arrives whole and in order (upstream paused while the client's socket is full), and is charged its usage", async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${gw.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      });
      req.on("error", reject);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        // A slow reader: paused for a moment after every chunk, so the gateway's writes fill the socket.
        res.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          res.pause();
          setTimeout(() => res.resume(), 1);
        });
        res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        res.on("error", reject);
      });
      req.end(JSON.stringify({ model: "long-stream", stream: true, messages: [{ role: "user", content: "hi" }] }));
    });
    const contents = [...text.matchAll(/"content":"(\d+):y+"/g)].map((m) => Number(m[1]));
    expect(contents).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    // The gateway asked for usage (the model is priced) and charged it: the spend row has it.
    await waitFor(
      async () => (await gw.gateway.pool.query("SELECT 1 FROM gh_spend_logs WHERE model = 'long-stream' AND completion_tokens = 7 AND prompt_tokens = 2")).rowCount === 1,
      { timeoutMs: 10_000, what: "the long stream's spend row with its usage" },
    );
  });
});
