import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateText, streamText } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { ANTHROPIC_KEY, AZURE_KEY, type MockProviders, startMockProviders } from "./support/mock-providers.js";

/**
 * OpenAI's Responses API, as the clients that call it by default use it (the openai SDK's `responses`, the AI SDK's
 * `openai(model)`, LangChain with `useResponsesApi`), against deployments that do not speak it: translated through
 * chat completions, text, tool calls and usage included.
 */
let mock: MockProviders;
let gw: TestGateway;
let key: string;
let openai: OpenAI;

beforeAll(async () => {
  mock = await startMockProviders();
  gw = await startTestGateway({
    config: {
      model_list: [
        { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
        { model_name: "claude-tools", litellm_params: { model: "anthropic/claude-tools", api_base: mock.url, api_key: ANTHROPIC_KEY } },
        { model_name: "claude-thinking", litellm_params: { model: "anthropic/claude-thinking", api_base: mock.url, api_key: ANTHROPIC_KEY } },
        { model_name: "azure-gpt", litellm_params: { model: "azure/gpt-az", api_base: mock.url, api_key: AZURE_KEY } },
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
