import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateText, streamText } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { ANTHROPIC_KEY, AZURE_KEY, type MockProviders, OPENAI_KEY, OPENAI_RESPONSES_USAGE, startMockProviders } from "./support/mock-providers.js";

/**
 * OpenAI's Responses API, as the clients that call it by default use it (the openai SDK's `responses`, the AI SDK's
 * `openai(model)`, LangChain with `useResponsesApi`): relayed as it came to OpenAI's own API (here the mock's, named
 * by OPENAI_API_BASE as LiteLLM reads it), and translated through chat completions for deployments that do not speak
 * it, text, tool calls and usage included.
 */
let mock: MockProviders;
let gw: TestGateway;
let key: string;
let openai: OpenAI;
const OPENAI_PRICES = { input_cost_per_token: 0.000001, cache_read_input_token_cost: 0.0000001, output_cost_per_token: 0.000002 };

beforeAll(async () => {
  mock = await startMockProviders();
  gw = await startTestGateway({
    // A deployment without api_base goes to OpenAI's API, or to the base URL the environment names for it.
    env: { OPENAI_API_BASE: `${mock.url}/v1` },
    config: {
      model_list: [
        { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
        { model_name: "claude-tools", litellm_params: { model: "anthropic/claude-tools", api_base: mock.url, api_key: ANTHROPIC_KEY } },
        { model_name: "claude-thinking", litellm_params: { model: "anthropic/claude-thinking", api_base: mock.url, api_key: ANTHROPIC_KEY } },
        { model_name: "azure-gpt", litellm_params: { model: "azure/gpt-az", api_base: mock.url, api_key: AZURE_KEY } },
        { model_name: "gpt-4.1", litellm_params: { model: "openai/gpt-4.1-2025-04-14", api_key: OPENAI_KEY, ...OPENAI_PRICES } },
        // The same server named as an api_base: an OpenAI-compatible server, which gets the Responses API translated.
        { model_name: "compat-gpt", litellm_params: { model: "openai/compat-gpt", api_base: `${mock.url}/v1`, api_key: OPENAI_KEY } },
      ],
    },
  });
  ({ key } = await gw.newKey());
  openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await gw?.close();
  await mock?.close();
});

describe("the openai SDK's responses", () => {
  it("create: text from a chat deployment, with the usage", async () => {
    const response = await openai.responses.create({ model: "mock-gpt", input: "Hi", instructions: "Be kind." });
    expect(response.status).toBe("completed");
    expect(response.output_text).toMatch(/Gatehouse/);
    expect(response.usage!.input_tokens).toBeGreaterThan(0);
    // `store` is in the API's answer but not in the SDK's Response type.
    expect(response).toMatchObject({ store: false });
  });

  it("stream: an Anthropic deployment's tool call, event by event", async () => {
    const stream = openai.responses.stream({
      model: "claude-tools",
      input: [{ role: "user", content: "Weather in San Francisco?" }],
      tools: [{ type: "function", name: "get_weather", parameters: { type: "object", properties: { location: { type: "string" } } }, strict: false }],
    });
    const types = new Set<string>();
    stream.on("event", (e) => types.add(e.type));
    const final = await stream.finalResponse();
    expect(types).toContain("response.function_call_arguments.delta");
    const call = final.output.find((o) => o.type === "function_call");
    expect(call).toMatchObject({ name: "get_weather", arguments: '{"location": "San Francisco, CA"}' });
    expect(final.output_text).toBe("Let me look that up.");
    expect(final.usage).toMatchObject({ input_tokens: 160, output_tokens: 20, input_tokens_details: { cached_tokens: 50 } });
  });

  it("create: an Anthropic deployment, its thinking as a reasoning item", async () => {
    const response = await openai.responses.create({ model: "claude-thinking", input: "Hi", max_output_tokens: 500 });
    expect(response.output.map((o) => o.type)).toEqual(["reasoning", "message"]);
    expect(response.output_text).toBe("Hello!");
    expect(response.usage).toMatchObject({ input_tokens: 160, output_tokens: 20 });
  });

  it("stream: an Azure deployment", async () => {
    const final = await openai.responses.stream({ model: "azure-gpt", input: "Hi" }).finalResponse();
    expect(final.output_text).toBe("Hello from Azure.");
  });

  it("create: an Azure deployment; stream: an OpenAI-compatible one", async () => {
    const response = await openai.responses.create({ model: "azure-gpt", input: "Hi" });
    expect(response.output_text).toBe("Hello from Azure deployment gpt-az.");
    expect(mock.received.at(-1)!.path).toBe("/openai/deployments/gpt-az/chat/completions");
    const final = await openai.responses.stream({ model: "mock-gpt", input: "Hi" }).finalResponse();
    expect(final.output_text).toMatch(/Gatehouse/);
    expect(final.usage!.output_tokens).toBeGreaterThan(0);
  });

  describe("on OpenAI's own API, which speaks it", () => {
    // (40 − 8 cached) input tokens, 8 read from OpenAI's cache and 6 output tokens, each at its price.
    const cost =
      (OPENAI_RESPONSES_USAGE.input_tokens - OPENAI_RESPONSES_USAGE.input_tokens_details.cached_tokens) * OPENAI_PRICES.input_cost_per_token +
      OPENAI_RESPONSES_USAGE.input_tokens_details.cached_tokens * OPENAI_PRICES.cache_read_input_token_cost +
      OPENAI_RESPONSES_USAGE.output_tokens * OPENAI_PRICES.output_cost_per_token;

    it("create: relayed as it came (model name aside), answered as OpenAI answered, charged its usage", async () => {
      const { key: priced } = await gw.newKey({ max_budget: 1 });
      const client = new OpenAI({ apiKey: priced, baseURL: `${gw.url}/v1`, maxRetries: 0 });
      const response = await client.responses.create({ model: "gpt-4.1", input: "Hi", store: true, metadata: { team: "docs" } });
      const sent = mock.received.at(-1)!;
      expect(sent.path).toBe("/v1/responses");
      expect(sent.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
      expect(sent.body).toEqual({ model: "gpt-4.1-2025-04-14", input: "Hi", store: true, metadata: { team: "docs" } });
      expect(response).toMatchObject({ id: "resp_mock_1", store: true, usage: OPENAI_RESPONSES_USAGE });
      expect(response.output_text).toBe("Hello from OpenAI's Responses API.");
      expect((await gw.admin(`/key/info?key=${priced}`)).body.info.spend).toBeCloseTo(cost, 12);
    });

    it("an openai/ deployment with another api_base is a compatible server: translated to chat completions", async () => {
      await openai.responses.create({ model: "compat-gpt", input: "Hi" }).catch(() => undefined); // the mock has no chat route for it
      expect(mock.received.at(-1)).toMatchObject({ path: "/v1/chat/completions", body: { model: "compat-gpt", messages: [{ role: "user", content: "Hi" }] } });
    });

    it("stream: OpenAI's events passed through unchanged, the usage read on the way", async () => {
      const { key: priced } = await gw.newKey({ max_budget: 1 });
      const res = await fetch(`${gw.url}/v1/responses`, {
        method: "POST",
        headers: { authorization: `Bearer ${priced}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4.1", input: "Hi", stream: true }),
      });
      expect(res.status).toBe(200);
      const frames = (await res.text()).split("\n\n").filter(Boolean);
      expect(frames[0]).toMatch(/^event: response\.created\ndata: /);
      const events = frames.map((f) => JSON.parse(f.slice(f.indexOf("data: ") + 6)));
      expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
      expect(events.at(-1)).toMatchObject({ type: "response.completed", response: { id: "resp_mock_1", usage: OPENAI_RESPONSES_USAGE } });
      expect((await gw.admin(`/key/info?key=${priced}`)).body.info.spend).toBeCloseTo(cost, 12);

      const final = await openai.responses.stream({ model: "gpt-4.1", input: "Hi" }).finalResponse();
      expect(final.output_text).toBe("Hello from OpenAI's Responses API.");
    });
  });

  it("refuses previous_response_id with a 400 that says nothing is stored", async () => {
    const err = await openai.responses.create({ model: "mock-gpt", input: "Hi", previous_response_id: "resp_123" }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.message).toMatch(/not stored/);
  });
});

describe("the AI SDK's default openai(model)", () => {
  const provider = () => createOpenAI({ apiKey: key, baseURL: `${gw.url}/v1` });

  it("generateText", async () => {
    const { text, usage } = await generateText({ model: provider()("mock-gpt"), prompt: "Hi", maxRetries: 0 });
    expect(text).toMatch(/Gatehouse/);
    expect(usage.inputTokens).toBeGreaterThan(0);
  });

  it("streamText", async () => {
    const result = streamText({ model: provider()("azure-gpt"), prompt: "Hi", maxRetries: 0 });
    let text = "";
    for await (const part of result.textStream) text += part;
    expect(text).toBe("Hello from Azure.");
    expect((await result.usage).outputTokens).toBe(5);
  });
});

describe("LangChain with useResponsesApi", () => {
  it("invoke", async () => {
    const llm = new ChatOpenAI({ model: "mock-gpt", apiKey: key, configuration: { baseURL: `${gw.url}/v1` }, useResponsesApi: true, maxRetries: 0 });
    const answer = await llm.invoke("Hi");
    expect(answer.text).toMatch(/Gatehouse/);
  });
});
