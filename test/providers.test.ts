import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { api } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";
import { checkAnthropicEvents } from "./helpers/stream-validators.js";
import { ANTHROPIC_KEY, ANTHROPIC_USAGE, AZURE_KEY, AZURE_USAGE, type MockProviders, startMockProviders } from "./support/mock-providers.js";

/**
 * Anthropic and Azure OpenAI deployments, and Anthropic's Messages API in front of any deployment, through the
 * clients people use (the openai and @anthropic-ai/sdk packages), against mock provider servers that answer like
 * the real ones and record what the gateway sent them.
 */
let mock: MockProviders;
let gw: TestGateway;
let key: string;
let openai: OpenAI;
let anthropic: Anthropic;

// Prices: every kind of token its own, so a charge shows which price each token met.
const CLAUDE_PRICES = { input_cost_per_token: 0.000003, output_cost_per_token: 0.000015, cache_read_input_token_cost: 0.0000003, cache_creation_input_token_cost: 0.00000375 };
const AZURE_PRICES = { input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 };

beforeAll(async () => {
  mock = await startMockProviders();
  const claude = (name: string, upstream: string) => ({
    model_name: name,
    litellm_params: { model: `anthropic/${upstream}`, api_base: mock.url, api_key: ANTHROPIC_KEY, ...CLAUDE_PRICES },
  });
  gw = await startTestGateway({
    config: {
      gatehouse_settings: { spend_logs: { flush_interval_ms: 100 } },
      model_list: [
        claude("claude", "claude-text"),
        claude("claude-tools", "claude-tools"),
        claude("claude-thinking", "claude-thinking"),
        claude("claude-stream-error", "claude-stream-error"),
        claude("claude-overloaded", "claude-overloaded"),
        claude("claude-hang", "claude-hang"),
        // One model, two deployments: the first answers 200 and then an overloaded error as its first event.
        { ...claude("claude-pair", "claude-first-error"), litellm_params: { ...claude("", "claude-first-error").litellm_params, order: 1 } },
        { ...claude("claude-pair", "claude-text"), litellm_params: { ...claude("", "claude-text").litellm_params, order: 2 } },
        { model_name: "azure-gpt", litellm_params: { model: "azure/gpt-az", api_base: mock.url, api_key: AZURE_KEY, api_version: "2024-10-21", ...AZURE_PRICES } },
        { model_name: "azure-filtered", litellm_params: { model: "azure/gpt-az-filtered", api_base: mock.url, api_key: AZURE_KEY } },
        { model_name: "azure-embedding", litellm_params: { model: "azure/text-embedding", api_base: mock.url, api_key: AZURE_KEY } },
        { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
      ],
    },
  });
  ({ key } = await gw.newKey());
  openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
});
afterAll(async () => {
  await gw?.close();
  await mock?.close();
});

const lastReceived = () => mock.received.at(-1)!;

describe("an Anthropic deployment, called with OpenAI's chat completions", () => {
  it("translates the request (headers, path, max_tokens, system) and the answer", async () => {
    const answer = await openai.chat.completions.create({
      model: "claude",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
      ],
    });
    expect(answer.choices[0]!.message.content).toBe("Hello from mock Claude.");
    expect(answer.choices[0]!.finish_reason).toBe("stop");
    expect(answer.usage).toMatchObject({ prompt_tokens: 160, completion_tokens: 20, prompt_tokens_details: { cached_tokens: 50 } });
    const sent = lastReceived();
    expect(sent.path).toBe("/v1/messages");
    expect(sent.headers["x-api-key"]).toBe(ANTHROPIC_KEY);
    expect(sent.headers["anthropic-version"]).toBe("2023-06-01");
    expect(sent.headers.authorization).toBeUndefined();
    expect(sent.body).toMatchObject({ model: "claude-text", system: [{ type: "text", text: "Be brief." }], messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }] });
    expect(sent.body.max_tokens).toBeGreaterThan(0);
  });

  it("streams a tool call event by event, and the usage when asked", async () => {
    const stream = await openai.chat.completions.create({
      model: "claude-tools",
      messages: [{ role: "user", content: "Weather?" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let args = "";
    let name = "";
    let finish: string | null = null;
    let usage: unknown;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      text += choice.delta.content ?? "";
      for (const t of choice.delta.tool_calls ?? []) {
        name ||= t.function?.name ?? "";
        args += t.function?.arguments ?? "";
      }
      finish = choice.finish_reason ?? finish;
    }
    expect(text).toBe("Let me look that up.");
    expect(name).toBe("get_weather");
    expect(JSON.parse(args)).toEqual({ location: "San Francisco, CA" });
    expect(finish).toBe("tool_calls");
    expect(usage).toMatchObject({ prompt_tokens: 160, completion_tokens: 20 });
  });

  it("charges each kind of token at its own price", async () => {
    const { key: priced, token } = await gw.newKey({ max_budget: 10 });
    const client = new OpenAI({ apiKey: priced, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await client.chat.completions.create({ model: "claude", messages: [{ role: "user", content: "Hi" }] });
    const stream = await client.chat.completions.create({ model: "claude", messages: [{ role: "user", content: "Hi" }], stream: true });
    for await (const _ of stream);
    const one =
      100 * CLAUDE_PRICES.input_cost_per_token +
      50 * CLAUDE_PRICES.cache_read_input_token_cost +
      10 * CLAUDE_PRICES.cache_creation_input_token_cost +
      20 * CLAUDE_PRICES.output_cost_per_token;
    const info = await gw.admin(`/key/info?key=${priced}`);
    expect(info.body.info.spend).toBeCloseTo(2 * one, 12);
    expect(token).toBeTruthy();
  });

  it("tells an in-stream error as the client's error event, and a 529 as a retryable 503", async () => {
    const stream = await openai.chat.completions.create({ model: "claude-stream-error", messages: [{ role: "user", content: "Hi" }], stream: true });
    await expect(
      (async () => {
        for await (const _ of stream);
      })(),
    ).rejects.toThrow(/overloaded/);
    const refused = await gw.call("/v1/chat/completions", { key, body: { model: "claude-overloaded", messages: [{ role: "user", content: "Hi" }] } });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe("upstream_overloaded");
    expect(refused.headers.get("retry-after")).toBe("1");
  });

  it("refuses a parameter Anthropic has no place for, naming it", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: { model: "claude", messages: [{ role: "user", content: "Hi" }], logprobs: true } });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ param: "logprobs", code: "unsupported_parameter" });
  });
});

describe("Anthropic's Messages API (the Anthropic SDK)", () => {
  it("passes an Anthropic deployment's answer through unchanged", async () => {
    const message = await anthropic.messages.create({ model: "claude-thinking", max_tokens: 1000, messages: [{ role: "user", content: "Hi" }] });
    expect(message.content.map((b) => b.type)).toEqual(["thinking", "text"]);
    expect(message.usage).toMatchObject(ANTHROPIC_USAGE);
    expect(lastReceived().body).toEqual({ model: "claude-thinking", max_tokens: 1000, messages: [{ role: "user", content: "Hi" }] });
    // The client's beta features reach Anthropic; its own key does not (the deployment's does).
    await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json", "anthropic-beta": "fine-grained-tool-streaming-2025-05-14" },
      body: JSON.stringify({ model: "claude", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    });
    expect(lastReceived().headers["anthropic-beta"]).toBe("fine-grained-tool-streaming-2025-05-14");
    expect(lastReceived().headers["x-api-key"]).toBe(ANTHROPIC_KEY);
  });

  it("streams an Anthropic deployment's events through, tool input included", async () => {
    const stream = anthropic.messages.stream({ model: "claude-tools", max_tokens: 100, messages: [{ role: "user", content: "Weather?" }] });
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe("tool_use");
    expect(final.content.find((b) => b.type === "tool_use")).toMatchObject({ name: "get_weather", input: { location: "San Francisco, CA" } });
  });

  it("serves a chat deployment, translated both ways, streamed or not", async () => {
    const message = await anthropic.messages.create({ model: "mock-gpt", max_tokens: 100, system: "Be kind.", messages: [{ role: "user", content: "Hi" }] });
    expect(message.type).toBe("message");
    expect(message.content[0]).toMatchObject({ type: "text" });
    expect((message.content[0] as { text: string }).text).toMatch(/Gatehouse/);
    expect(message.stop_reason).toBe("end_turn");
    expect(message.usage.input_tokens).toBeGreaterThan(0);

    // As Claude Code sends it: `?beta=true`, the key as a bearer (ANTHROPIC_AUTH_TOKEN), beta headers.
    const raw = await fetch(`${gw.url}/v1/messages?beta=true`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14" },
      body: JSON.stringify({ model: "mock-gpt", max_tokens: 100, stream: true, messages: [{ role: "user", content: "Hi" }] }),
    });
    const events = (await raw.text())
      .split("\n\n")
      .filter((f) => f.includes("data: "))
      .map((f) => JSON.parse(f.slice(f.indexOf("data: ") + 6)));
    const seen = checkAnthropicEvents(events);
    expect(seen.blocks.map((b) => b.type)).toEqual(["text"]);
    expect(seen.usage.output_tokens).toBeGreaterThan(0);

    const streamed = await anthropic.messages.stream({ model: "azure-gpt", max_tokens: 100, messages: [{ role: "user", content: "Hi" }] }).finalMessage();
    expect(streamed.content).toEqual([{ type: "text", text: "Hello from Azure.", citations: undefined }].map(({ citations: _, ...b }) => b));
    expect(streamed.usage).toMatchObject({ input_tokens: AZURE_USAGE.prompt_tokens, output_tokens: AZURE_USAGE.completion_tokens });
  });

  it("counts tokens upstream where it can, and says it estimates where it cannot", async () => {
    const counted = await anthropic.messages.countTokens({ model: "claude", messages: [{ role: "user", content: "Hello there" }] });
    expect(lastReceived().path).toBe("/v1/messages/count_tokens");
    expect(counted.input_tokens).toBe(Math.round(JSON.stringify(lastReceived().body).length / 10));
    const res = await api<Anthropic.MessageTokensCount>(gw.url, "/v1/messages/count_tokens", {
      headers: { "x-api-key": key },
      body: { model: "mock-gpt", messages: [{ role: "user", content: "Hello there" }] },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("gatehouse-token-count")).toMatch(/^estimated/);
    expect(res.body.input_tokens).toBeGreaterThan(0);
  });

  it("answers errors in Anthropic's shape, which its SDK reads", async () => {
    await expect(anthropic.messages.create({ model: "nope", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude", messages: [] }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ type: "error", error: { type: "invalid_request_error", message: expect.stringMatching(/messages/) } });
    const overloaded = await anthropic.messages.create({ model: "claude-overloaded", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
    expect(overloaded).toBeInstanceOf(Anthropic.APIError);
    expect(overloaded.status).toBe(503);
  });
});

describe("an overloaded error as a stream's first event", () => {
  it("is retried on the model's next deployment before the client has a byte, chat and Messages alike", async () => {
    const stream = await openai.chat.completions.create({ model: "claude-pair", messages: [{ role: "user", content: "Hi" }], stream: true }).withResponse();
    expect(stream.response.headers.get("gatehouse-attempts")).toBe("2");
    let text = "";
    for await (const chunk of stream.data) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("Hello from mock Claude.");
    const message = await anthropic.messages.stream({ model: "claude-pair", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }).finalMessage();
    expect(message.content).toEqual([{ type: "text", text: "Hello from mock Claude." }]);
  });
});

describe("every guard of a request holds on Anthropic's and the Responses API's routes", () => {
  const routes = [
    { route: "/v1/messages", body: { model: "claude", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }, anthropic: true },
    { route: "/v1/responses", body: { model: "claude", input: "Hi" }, anthropic: false },
  ];

  for (const r of routes) {
    it(`${r.route}: the key is checked before the body is read, in the route's error shape`, async () => {
      const res = await fetch(`${gw.url}${r.route}`, {
        method: "POST",
        headers: { "x-api-key": "sk-not-a-key-0000000000", "content-type": "application/json" },
        body: "{not json",
      });
      expect(res.status).toBe(401);
      const body = (await res.json()) as Record<string, unknown>;
      if (r.anthropic) expect(body).toMatchObject({ type: "error", error: { type: "authentication_error" } });
      else {
        expect(Object.keys(body)).toEqual(["error"]); // OpenAI's shape, not Anthropic's
        expect(body.error).toMatchObject({ type: "authentication_error" });
      }
    });

    it(`${r.route}: a key's model list, its rpm limit and the duplicate-field check apply`, async () => {
      const { key: narrow } = await gw.newKey({ models: ["azure-gpt"], rpm_limit: 1 });
      const refused = await gw.call(r.route, { key: narrow, body: r.body });
      expect(refused.status).toBe(403);
      expect(refused.body.error.message).toMatch(/not allowed to use the model 'claude'/);
      const allowed = { ...r.body, model: "azure-gpt" };
      expect((await gw.call(r.route, { key: narrow, body: allowed })).status).toBe(200);
      const limited = await gw.call(r.route, { key: narrow, body: allowed });
      expect(limited.status).toBe(429);
      expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);

      // Authorised as one model, served as another: refused.
      const twice = await fetch(`${gw.url}${r.route}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: `{"model":"claude",${JSON.stringify({ ...r.body, model: "azure-gpt" }).slice(1)}`,
      });
      expect(twice.status).toBe(400);
      expect(((await twice.json()) as { error: { message: string } }).error.message).toMatch(/'model' appears more than once/);
    });
  }

  it("spend logs name the deployment that served each shape, provider included; metrics count each route", async () => {
    const served = async (route: string) => {
      const text = (await gw.call("/metrics", { key: gw.masterKey })).text;
      const line = text
        .split("\n")
        .find((l) => l.startsWith("gatehouse_requests_total{") && l.includes(`route="${route}"`) && l.includes('model="claude"') && l.includes('status="200"'));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    const before = { messages: await served("/v1/messages"), responses: await served("/v1/responses") };
    const { key: logged, key_id } = await gw.newKey();
    for (const r of routes) expect((await gw.call(r.route, { key: logged, body: r.body })).status).toBe(200);
    expect((await gw.call("/v1/messages", { key: logged, body: { ...routes[0]!.body, model: "azure-gpt" } })).status).toBe(200);
    const rows = await waitFor(
      async () => {
        const page = (await gw.admin(`/spend/logs?key_id=${key_id}`)).body as Array<Record<string, unknown>>;
        return page.length === 3 ? page : undefined;
      },
      { what: "three spend-log rows" },
    );
    expect(rows.map((row) => row.upstream_model).sort()).toEqual(["anthropic/claude-text", "anthropic/claude-text", "azure/gpt-az"]);
    expect(rows.every((row) => row.status_code === 200 && Number(row.spend) > 0)).toBe(true);
    expect(await served("/v1/messages")).toBe(before.messages + 1);
    expect(await served("/v1/responses")).toBe(before.responses + 1);
  });
});

describe("a client that leaves mid-stream", () => {
  // The upstream sends its first events and then nothing: only the gateway ending the call ends it.
  const shapes = [
    { shape: "chat completions (translated)", route: "/v1/chat/completions", body: { messages: [{ role: "user", content: "Hi" }] } },
    { shape: "Messages (native)", route: "/v1/messages", body: { max_tokens: 10, messages: [{ role: "user", content: "Hi" }] } },
    { shape: "Responses (translated)", route: "/v1/responses", body: { input: "Hi" } },
  ];
  for (const s of shapes) {
    it(`ends the upstream call: ${s.shape}`, async () => {
      const before = mock.aborted("claude-hang");
      const leave = new AbortController();
      const res = await fetch(`${gw.url}${s.route}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "claude-hang", stream: true, ...s.body }),
        signal: leave.signal,
      });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      await reader.read(); // the first bytes are here: the stream is under way
      leave.abort();
      await waitFor(() => mock.aborted("claude-hang") > before, { what: `the upstream call of a ${s.shape} stream to be ended` });
    });
  }
});

describe("an Azure OpenAI deployment", () => {
  it("is called at its deployment path with the api-version and the api-key header, streamed or not", async () => {
    const answer = await openai.chat.completions.create({ model: "azure-gpt", messages: [{ role: "user", content: "Hi" }], max_tokens: 33 });
    expect(answer.choices[0]!.message.content).toBe("Hello from Azure deployment gpt-az.");
    const sent = lastReceived();
    expect(sent.path).toBe("/openai/deployments/gpt-az/chat/completions");
    expect(sent.query.get("api-version")).toBe("2024-10-21");
    expect(sent.headers["api-key"]).toBe(AZURE_KEY);
    expect(sent.headers.authorization).toBeUndefined();

    const stream = await openai.chat.completions.create({ model: "azure-gpt", messages: [{ role: "user", content: "Hi" }], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("Hello from Azure.");
    const completion = await openai.completions.create({ model: "azure-gpt", prompt: "Say done" });
    expect(completion.choices[0]!.text).toBe("done");
    expect(lastReceived().path).toBe("/openai/deployments/gpt-az/completions");
    const emb = await openai.embeddings.create({ model: "azure-embedding", input: "x" });
    expect(emb.data[0]!.embedding.map((v) => Math.round(v * 100) / 100)).toEqual([0.1, 0.2]);
    expect(lastReceived().path).toBe("/openai/deployments/text-embedding/embeddings");
  });

  it("relays a content-filter refusal as a 400 the client can tell apart", async () => {
    const err = await openai.chat.completions.create({ model: "azure-filtered", messages: [{ role: "user", content: "Hi" }] }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.code).toBe("content_filter");
  });
});

describe("spend: for each provider and shape, the charge is the upstream's usage × the deployment's prices", () => {
  // Anthropic's usage (fixed by the mock): plain input, cache reads, cache writes and output, each at its price.
  const CLAUDE_COST =
    ANTHROPIC_USAGE.input_tokens * CLAUDE_PRICES.input_cost_per_token +
    ANTHROPIC_USAGE.cache_read_input_tokens * CLAUDE_PRICES.cache_read_input_token_cost +
    ANTHROPIC_USAGE.cache_creation_input_tokens * CLAUDE_PRICES.cache_creation_input_token_cost +
    ANTHROPIC_USAGE.output_tokens * CLAUDE_PRICES.output_cost_per_token;
  const AZURE_COST = AZURE_USAGE.prompt_tokens * AZURE_PRICES.input_cost_per_token + AZURE_USAGE.completion_tokens * AZURE_PRICES.output_cost_per_token;
  const messages = [{ role: "user", content: "Hi" }];
  const cases = [
    { shape: "chat", route: "/v1/chat/completions", model: "azure-gpt", body: { messages }, cost: AZURE_COST },
    { shape: "messages (native)", route: "/v1/messages", model: "claude", body: { messages, max_tokens: 50 }, cost: CLAUDE_COST },
    { shape: "messages (translated)", route: "/v1/messages", model: "azure-gpt", body: { messages, max_tokens: 50 }, cost: AZURE_COST },
    { shape: "responses (translated to Anthropic)", route: "/v1/responses", model: "claude", body: { input: "Hi" }, cost: CLAUDE_COST },
    { shape: "responses (translated to Azure)", route: "/v1/responses", model: "azure-gpt", body: { input: "Hi" }, cost: AZURE_COST },
  ];
  for (const c of cases) {
    for (const stream of [false, true]) {
      it(`${c.shape} on ${c.model}${stream ? ", streamed" : ""}: charged exactly, then refused by its budget in the route's shape`, async () => {
        // A budget below one request: the first is admitted (something is left), its charge spends it all.
        const { key: priced } = await gw.newKey({ max_budget: c.cost / 2 });
        const send = () => gw.call(c.route, { key: priced, body: { model: c.model, ...c.body, stream } });
        const first = await send();
        expect(first.status, first.text).toBe(200);
        const info = await gw.admin(`/key/info?key=${priced}`);
        expect(info.body.info.spend).toBeCloseTo(c.cost, 12);
        const refused = await send();
        expect(refused.status).toBe(400);
        if (c.route === "/v1/messages") expect(refused.body).toMatchObject({ type: "error", error: { type: "invalid_request_error", message: expect.stringMatching(/budget/i) } });
        else expect(refused.body.error.type).toBe("budget_exceeded");
      });
    }
  }
});

describe("a database model of each provider (/model/new takes LiteLLM's params)", () => {
  it("is served with its sealed credentials and never shows them", async () => {
    const added = await gw.admin("/model/new", {
      model_name: "azure-db",
      litellm_params: { model: "azure/gpt-az", api_base: mock.url, api_key: AZURE_KEY, api_version: "2024-06-01" },
    });
    expect(added.status, added.text).toBe(200);
    expect(JSON.stringify(added.body)).not.toContain(AZURE_KEY);
    const answer = await openai.chat.completions.create({ model: "azure-db", messages: [{ role: "user", content: "Hi" }] });
    expect(answer.choices[0]!.message.content).toMatch(/Azure/);
    expect(lastReceived().query.get("api-version")).toBe("2024-06-01");
    expect(lastReceived().headers["api-key"]).toBe(AZURE_KEY);
    const claude = await gw.admin("/model/new", { model_name: "claude-db", litellm_params: { model: "anthropic/claude-text", api_base: mock.url, api_key: ANTHROPIC_KEY } });
    expect(claude.status, claude.text).toBe(200);
    const message = await anthropic.messages.create({ model: "claude-db", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] });
    expect(message.content).toEqual([{ type: "text", text: "Hello from mock Claude." }]);
  });
});
