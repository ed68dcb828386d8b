import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { chatBody } from "./helpers/http.js";

/**
 * The head of every kind of answer on the model routes, byte for byte: status, header names (as sent, in order) and
 * values. The answer path writes its heads in more than one way (one writeHead for an answer, setHeader for errors);
 * whichever it takes, what a client receives must be the same. Values that change per request (the date, a request
 * id the gateway made, the time to a limit's reset) are masked.
 */

let gw: TestGateway;
let upstream: FakeUpstream;
let key: string;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  const openai = (name: string, model: string) => ({ model_name: name, litellm_params: { model: `openai/${model}`, api_base: `${upstream.url}/v1`, api_key: "k" } });
  gw = await startTestGateway({
    config: {
      model_list: [
        openai("echo", "echo"),
        openai("rate-limited", "rate-limited"),
        openai("stream-crlf", "stream-crlf"),
        openai("broken", "broken"),
        openai("not-json", "not-json"),
        { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
      ],
    },
  });
  key = (await gw.newKey()).key;
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

const MASKED = new Set(["date", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]);
const GENERATED_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The answer's status and raw headers, in order, as "name: value" lines (varying values masked). */
function head(path: string, options: { method?: string; bearer?: string; body?: string; headers?: Record<string, string> } = {}): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, gw.url);
    const headers: Record<string, string> = { ...options.headers };
    if (options.bearer) headers.authorization = `Bearer ${options.bearer}`;
    if (options.body !== undefined) headers["content-type"] ??= "application/json";
    const req = http.request(url, { method: options.method ?? (options.body === undefined ? "GET" : "POST"), headers, agent: false }, (res) => {
      const lines = [`${res.statusCode}`];
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const name = res.rawHeaders[i]!;
        const value = res.rawHeaders[i + 1]!;
        lines.push(`${name}: ${MASKED.has(name.toLowerCase()) ? "*" : GENERATED_ID.test(value) ? "<id>" : value}`);
      }
      // Resolved at the head: a gated stream's end comes later (the test releases it).
      res.resume();
      resolve(lines);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

const post = (model: string, extra: Record<string, unknown> = {}, bearer = key, headers: Record<string, string> = {}) =>
  head("/v1/chat/completions", { bearer, body: JSON.stringify(chatBody(model, extra)), headers });

const ROUTING = ["gatehouse-deployment: <d>", "gatehouse-attempts: 1", "x-litellm-model-id: <d>", "x-litellm-attempted-retries: 0", "x-litellm-attempted-fallbacks: 0"];
/** The deployment id in the routing headers, masked (ids are made from the config). */
const maskDeployment = (lines: string[]) => lines.map((l) => l.replace(/^(gatehouse-deployment|x-litellm-model-id): .*$/, "$1: <d>"));

describe("answer heads on the model routes", () => {
  it("a JSON answer: request id, routing headers, content type and length", async () => {
    expect(maskDeployment(await post("mock-gpt", { mock_response: "hi" }))).toEqual([
      "200",
      "x-request-id: <id>",
      ...ROUTING,
      "content-type: application/json",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("a relayed upstream answer, with the client's own request id echoed", async () => {
    expect(maskDeployment(await post("echo", {}, key, { "x-request-id": "client-id-1" }))).toEqual([
      "200",
      "x-request-id: client-id-1",
      ...ROUTING,
      "content-type: application/json",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("a stream: no length, not cached nor buffered, chunked", async () => {
    const lines = maskDeployment(await post("stream-crlf", { stream: true }));
    upstream.releaseNext();
    expect(lines).toEqual([
      "200",
      "x-request-id: <id>",
      ...ROUTING,
      "content-type: text/event-stream",
      "cache-control: no-cache",
      "x-accel-buffering: no",
      "Date: *",
      "Connection: close",
      "Transfer-Encoding: chunked",
    ]);
  });

  it("a limited key's answer carries its x-ratelimit-* headers before the routing headers", async () => {
    const limited = (await gw.newKey({ rpm_limit: 100 })).key;
    expect(maskDeployment(await post("mock-gpt", {}, limited))).toEqual([
      "200",
      "x-request-id: <id>",
      "x-ratelimit-limit-requests: 100",
      "x-ratelimit-remaining-requests: 99",
      "x-ratelimit-reset-requests: *",
      ...ROUTING,
      "content-type: application/json",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("errors carry the request id: a bad key, a bad body, an unknown model", async () => {
    const error = ["content-type: application/json; charset=utf-8", expect.stringMatching(/^content-length: \d+$/), "Date: *", "Connection: close"];
    expect(await post("echo", {}, "sk-not-a-key-aaaaaaaaaaaaaaaaaaaaaaaa")).toEqual(["401", "x-request-id: <id>", ...error]);
    expect(await head("/v1/chat/completions", { bearer: key, body: "{not json", headers: { "x-request-id": "client-id-2" } })).toEqual([
      "400",
      "x-request-id: client-id-2",
      ...error,
    ]);
    expect(await post("no-such-model")).toEqual(["404", "x-request-id: <id>", ...error]);
    expect(await post("broken")).toEqual(["502", "x-request-id: <id>", ...error]);
  });

  it("an upstream 429 is relayed with its Retry-After", async () => {
    expect(await post("rate-limited", { num_retries: 0 })).toEqual([
      "429",
      "x-request-id: <id>",
      "retry-after: 7",
      "content-type: application/json; charset=utf-8",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("a key at its limit is refused with its limit's headers", async () => {
    const one = (await gw.newKey({ rpm_limit: 1 })).key;
    await post("mock-gpt", {}, one);
    expect(await post("mock-gpt", {}, one)).toEqual([
      "429",
      "x-request-id: <id>",
      "x-ratelimit-limit-requests: 1",
      "x-ratelimit-remaining-requests: 0",
      "x-ratelimit-reset-requests: *",
      expect.stringMatching(/^retry-after: \d+$/),
      "content-type: application/json; charset=utf-8",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("an answer that fails before its first byte keeps the routing headers it had", async () => {
    const body = JSON.stringify({ model: "not-json", max_tokens: 10, messages: [{ role: "user", content: "Say hello" }] });
    expect(maskDeployment(await head("/v1/messages", { bearer: key, body }))).toEqual([
      "502",
      "x-request-id: <id>",
      ...ROUTING,
      "content-type: application/json; charset=utf-8",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("an estimated token count carries how it was estimated", async () => {
    const body = JSON.stringify({ model: "echo", messages: [{ role: "user", content: "Say hello" }] });
    expect(await head("/v1/messages/count_tokens", { bearer: key, body })).toEqual([
      "200",
      "x-request-id: <id>",
      "gatehouse-token-count: estimated: the model's provider has no token count; 4 bytes of system, messages and tools a token",
      "content-type: application/json",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });

  it("the model list", async () => {
    expect(await head("/v1/models", { bearer: key })).toEqual([
      "200",
      "x-request-id: <id>",
      "content-type: application/json; charset=utf-8",
      expect.stringMatching(/^content-length: \d+$/),
      "Date: *",
      "Connection: close",
    ]);
  });
});
