import { describe, expect, it } from "vitest";
import { jsonUsageMeter } from "../src/limits/usage-meter.js";

function meter(chunks: Array<string | Uint8Array>) {
  const m = jsonUsageMeter();
  for (const c of chunks) m.pass(c);
  m.end();
  return m.usage;
}

describe("usage of a JSON answer", () => {
  it("is read from the answer's tail, split across chunks and pretty-printed alike", () => {
    const answer = JSON.stringify(
      { id: "x", choices: [{ message: { content: "é".repeat(5000) } }], usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 } },
      null,
      2,
    );
    const bytes = Buffer.from(answer);
    const cut = bytes.length - 40; // inside the usage object, and after a multi-byte prefix
    expect(meter([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual({ promptTokens: 12, completionTokens: 7 });
  });

  it("falls back to the whole answer when usage is not at its end", () => {
    const answer = JSON.stringify({ usage: { prompt_tokens: 3, completion_tokens: 4 }, id: "x", choices: [{ message: { content: "a".repeat(10_000) } }] });
    expect(meter([answer])).toEqual({ promptTokens: 3, completionTokens: 4 });
  });

  it("nested usage details do not confuse it; a usage quoted in the content does not either", () => {
    const answer = JSON.stringify({
      choices: [{ message: { content: 'say "usage": {"prompt_tokens": 999}' } }],
      usage: { prompt_tokens: 5, completion_tokens: 6, prompt_tokens_details: { cached_tokens: 2 } },
    });
    expect(meter([answer])).toEqual({ promptTokens: 5, completionTokens: 6, cacheReadTokens: 2 });
  });

  it("an answer without usage, or not JSON, has none", () => {
    expect(meter([JSON.stringify({ id: "x" })])).toBeUndefined();
    expect(meter(["<html>not json</html>"])).toBeUndefined();
  });
});
