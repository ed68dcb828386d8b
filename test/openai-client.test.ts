import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";

let gw: TestGateway;
let client: OpenAI;
beforeAll(async () => {
  gw = await startTestGateway();
  const { key } = await gw.newKey({ models: ["mock-gpt", "mock-embedding"] });
  client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await gw?.close();
});

describe("the official openai client talks to Gatehouse", () => {
  it("chat completions", async () => {
    const completion = await client.chat.completions.create({ model: "mock-gpt", messages: [{ role: "user", content: "hi" }], mock_response: "Hi there!" } as any);
    expect(completion.choices[0]!.message.content).toBe("Hi there!");
    expect(completion.usage!.total_tokens).toBeGreaterThan(0);
  });

  it("streaming chat completions", async () => {
    const stream = await client.chat.completions.create({
      model: "mock-gpt",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      mock_response: "one two three four",
    } as any);
    let text = "";
    let chunks = 0;
    for await (const chunk of stream as any) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    expect(text).toBe("one two three four");
    expect(chunks).toBeGreaterThanOrEqual(4);
  });

  it("embeddings and models", async () => {
    const emb = await client.embeddings.create({ model: "mock-embedding", input: ["a", "b"] });
    expect(emb.data).toHaveLength(2);
    expect(emb.data[0]!.embedding.length).toBe(16);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(["mock-embedding", "mock-gpt"]);
  });

  it("errors surface as the client's typed errors", async () => {
    await expect(client.chat.completions.create({ model: "mock-other", messages: [{ role: "user", content: "hi" }] })).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    const bad = new OpenAI({ apiKey: "sk-not-a-real-key-1", baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const err = await bad.chat.completions.create({ model: "mock-gpt", messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(err.code).toBe("invalid_api_key");
  });
});
