import { describe, expect, it } from "vitest";
import type { ModelDeployment } from "../src/config/settings.js";
import { CHAT_COMPLETIONS } from "../src/proxy/inbound/openai.js";

const deployment = (upstreamModel: string) => ({ provider: "openai", upstreamModel }) as ModelDeployment;

describe("a chat request's upstream body", () => {
  it("is the client's bytes when nothing changes", () => {
    const raw = Buffer.from('{"model":"m","stream":true,"messages":[]}');
    expect(CHAT_COMPLETIONS.nativeBody(JSON.parse(raw.toString()), deployment("m"), false, raw)).toBeNull();
  });

  it.each([
    ["opens with its brace", '{"model":"m","stream":true,"messages":[{"role":"user","content":"é"}]}'],
    ["opens with white space", ' \n{ "model" : "m", "stream": true, "messages": [{"role":"user","content":"é"}] }'],
  ])("asks a charged stream for its usage by putting the field before the client's own bytes (a body that %s)", (_, text) => {
    const raw = Buffer.from(text);
    const changed = CHAT_COMPLETIONS.nativeBody(JSON.parse(raw.toString()), deployment("m"), true, raw);
    expect(changed?.raw).toBeDefined();
    const sent = changed!.raw!.toString();
    expect(sent.length).toBe(text.length + '"stream_options":{"include_usage":true},'.length);
    expect(JSON.parse(sent)).toEqual({ ...JSON.parse(raw.toString()), stream_options: { include_usage: true } });
    expect(changed!.body).toEqual(JSON.parse(sent));
    expect(raw.toString()).toBe(text);
  });

  it("is serialized again when the model is renamed or the client sent stream_options of its own", () => {
    const renamed = Buffer.from('{"model":"alias","stream":true,"messages":[]}');
    expect(CHAT_COMPLETIONS.nativeBody(JSON.parse(renamed.toString()), deployment("upstream-name"), true, renamed)).toEqual({
      body: { model: "upstream-name", stream: true, messages: [], stream_options: { include_usage: true } },
    });
    const own = Buffer.from('{"model":"m","stream":true,"stream_options":{"include_obfuscation":false},"messages":[]}');
    expect(CHAT_COMPLETIONS.nativeBody(JSON.parse(own.toString()), deployment("m"), true, own)).toEqual({
      body: { model: "m", stream: true, messages: [], stream_options: { include_obfuscation: false, include_usage: true } },
    });
  });
});
