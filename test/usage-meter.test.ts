import { describe, expect, it } from "vitest";
import { jsonUsageMeter, sseUsageMeter } from "../src/limits/usage-meter.js";

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

  it("reads an answer's bytes as it reads the same text: in one chunk, or with a last chunk long enough to be the tail", () => {
    const answers = [
      JSON.stringify({ id: "x", choices: [], usage: { prompt_tokens: 10, completion_tokens: 7, total_tokens: 17 } }),
      JSON.stringify(
        {
          choices: [{ message: { content: 'say "usage": {"prompt_tokens": 999}' } }],
          usage: { prompt_tokens: 5, completion_tokens: 6, prompt_tokens_details: { cached_tokens: 2 } },
        },
        null,
        2,
      ),
      JSON.stringify({ usage: { prompt_tokens: 3, completion_tokens: 4 }, id: "x", choices: [{ message: { content: "a".repeat(10_000) } }] }),
      JSON.stringify({ choices: [{ message: { content: "é".repeat(3000) } }], usage: { prompt_tokens: 1, completion_tokens: 2 } }),
      JSON.stringify({ id: "x", usage: "none" }),
      '{"usage" : {"prompt_tokens": 4, "completion_tokens": 1',
      "<html>not json</html>",
    ];
    for (const answer of answers) {
      const bytes = Buffer.from(answer);
      const asText = meter([answer]);
      expect(meter([bytes]), answer.slice(0, 60)).toEqual(asText);
      expect(meter([new Uint8Array(bytes)]), answer.slice(0, 60)).toEqual(asText);
      if (bytes.length > 4096 + 10) expect(meter([bytes.subarray(0, 10), bytes.subarray(10)]), answer.slice(0, 60)).toEqual(asText);
    }
    expect(meter([Buffer.from(answers[0]!)])).toEqual({ promptTokens: 10, completionTokens: 7 });
  });
});

describe("a chat stream's meter", () => {
  const frame = (content: string) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;
  const usageFrame = `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 2 } })}\n\n`;

  it("passes whole frames that do not mention usage as the very bytes they came in", () => {
    const m = sseUsageMeter(false);
    const chunk = Buffer.from(frame("Hello") + frame(" world"));
    expect(m.pass(chunk)).toBe(chunk);
    expect(m.pass(Buffer.from(usageFrame))).toBe(""); // the usage chunk the client did not ask for
    expect(m.end()).toBe("");
    expect(m.usage).toEqual({ promptTokens: 5, completionTokens: 2 });
  });

  it("reads only the usage frame of a last chunk that holds frames, the usage frame and [DONE]: the rest passes as its bytes", () => {
    const done = "data: [DONE]\n\n";
    const chunk = Buffer.from(frame("é€") + usageFrame + done);
    const dropped = sseUsageMeter(false);
    expect(Buffer.from(dropped.pass(chunk)).toString("utf8")).toBe(frame("é€") + done);
    expect(dropped.end()).toBe("");
    expect(dropped.usage).toEqual({ promptTokens: 5, completionTokens: 2 });
    // The client asked for it: the chunk is relayed as it came.
    const asked = sseUsageMeter(true);
    expect(Buffer.from(asked.pass(chunk)).toString("utf8")).toBe(chunk.toString("utf8"));
    expect(asked.usage).toEqual({ promptTokens: 5, completionTokens: 2 });
    // Usage on a chunk with choices: the field goes, the frame stays, and so do the frames around it.
    const withChoices = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "!" } }], usage: { prompt_tokens: 5, completion_tokens: 3 } })}\n\n`;
    const kept = sseUsageMeter(false);
    expect(Buffer.from(kept.pass(Buffer.from(frame("a") + withChoices + done))).toString("utf8")).toBe(frame("a") + frame("!") + done);
    expect(kept.usage).toEqual({ promptTokens: 5, completionTokens: 3 });
    // Two frames mention usage: read frame by frame, the last one counts.
    const twice = sseUsageMeter(false);
    const second = usageFrame.replace('"completion_tokens":2', '"completion_tokens":4');
    expect(Buffer.from(twice.pass(Buffer.from(usageFrame + second + done))).toString("utf8")).toBe(done);
    expect(twice.usage).toEqual({ promptTokens: 5, completionTokens: 4 });
  });

  it("reads a usage-only frame without parsing it whole, and answers as parsing it would", () => {
    const meter = () => sseUsageMeter(false);
    const pass = (m: ReturnType<typeof meter>, text: string) => Buffer.from(m.pass(Buffer.from(text))).toString("utf8");
    // Spaced and nested: the usage is read, the frame dropped.
    const spaced = sseUsageMeter(false);
    const nested = `data: {"id":"c1","choices" : [ ],"usage": {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}}\n\n`;
    expect(pass(spaced, nested)).toBe("");
    expect(spaced.usage).toEqual({ promptTokens: 9, completionTokens: 4, cacheReadTokens: 2 });
    // usage null: no usage, and the frame passes (as a parsed chunk with usage null does).
    const none = meter();
    const nullUsage = `data: {"choices":[],"usage":null}\n\n`;
    expect(pass(none, nullUsage)).toBe(nullUsage);
    expect(none.usage).toBeUndefined();
    // "choices" named twice: parsed whole, and JSON's last key wins (choices with content: the frame is kept).
    const twice = meter();
    const twoChoices = `data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1},"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n`;
    expect(pass(twice, twoChoices)).toBe(frame("x"));
    expect(twice.usage).toEqual({ promptTokens: 1, completionTokens: 1 });
  });

  it("keeps a character cut between chunks whole, even when the cut follows a frame's end", () => {
    const m = sseUsageMeter(false);
    const text = frame("a") + frame("é€😀") + usageFrame;
    const bytes = Buffer.from(text);
    let out = "";
    // Every cut point: right after a frame's blank line and inside a multi-byte character among them.
    for (let cut = 1; cut < bytes.length; cut++) {
      const again = sseUsageMeter(false);
      const relayed = [again.pass(bytes.subarray(0, cut)), again.pass(bytes.subarray(cut)), again.end()]
        .map((p) => (typeof p === "string" ? p : Buffer.from(p).toString("utf8")))
        .join("");
      expect(relayed).toBe(frame("a") + frame("é€😀"));
      expect(again.usage).toEqual({ promptTokens: 5, completionTokens: 2 });
    }
    out = [m.pass(bytes), m.end()].map((p) => (typeof p === "string" ? p : Buffer.from(p).toString("utf8"))).join("");
    expect(out).toBe(frame("a") + frame("é€😀"));
  });

  it("finds usage only where a field is named so: not in a name that ends with it, nor in content that quotes it", () => {
    const done = "data: [DONE]\n\n";
    // A field whose name ends in usage, and content that quotes the name (escaped, as JSON escapes quotes), in the same chunk as the usage frame.
    const tricky = `data: {"choices":[{"index":0,"delta":{"content":"a"}}],"x_usage":{"prompt_tokens":99}}\n\n${frame('my usage" is "usage" here, usage"')}${frame('"choices"')}`;
    const dropped = sseUsageMeter(false);
    expect(Buffer.from(dropped.pass(Buffer.from(tricky + usageFrame + done))).toString("utf8")).toBe(tricky + done);
    expect(dropped.usage).toEqual({ promptTokens: 5, completionTokens: 2 });
    // The content alone: no frame mentions usage, the chunk passes as the very bytes it came in.
    const chunk = Buffer.from(tricky);
    expect(sseUsageMeter(false).pass(chunk)).toBe(chunk);
  });

  it("passes OpenAI's chunks that carry usage null, and reads the usage chunk that follows them", () => {
    // With include_usage, OpenAI names usage (null) in every chunk; only the last one holds a count.
    const withNull = (content: string) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }], usage: null })}\n\n`;
    const m = sseUsageMeter(false);
    const relayed = [m.pass(Buffer.from(withNull("Hel"))), m.pass(Buffer.from(`${withNull("lo")}${usageFrame}data: [DONE]\n\n`)), m.end()]
      .map((p) => (typeof p === "string" ? p : Buffer.from(p).toString("utf8")))
      .join("");
    expect(relayed).toBe(`${withNull("Hel")}${withNull("lo")}data: [DONE]\n\n`);
    expect(m.usage).toEqual({ promptTokens: 5, completionTokens: 2 });
    // They pass unread: the very bytes they came in, spaced or not, one frame to a chunk or several.
    const unread = sseUsageMeter(false);
    for (const chunk of [withNull("a"), withNull("b") + withNull("c"), withNull("d").replace('"usage":null', '"usage" :\tnull')].map((t) => Buffer.from(t))) {
      expect(unread.pass(chunk)).toBe(chunk);
    }
    expect(unread.usage).toBeUndefined();
    // Named null and then with counts in one chunk: JSON's last key wins, so it is read whole.
    const twice = sseUsageMeter(false);
    expect(twice.pass(Buffer.from('data: {"choices":[],"usage":null,"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n'))).toBe("");
    expect(twice.usage).toEqual({ promptTokens: 1, completionTokens: 1 });
  });

  it("answers the same for a last chunk read where it is as for the same frames read one by one", () => {
    // A chunk that arrives whole is searched in place (its usage frame read from the bytes as they are); the same
    // bytes cut in two are read frame by frame, each frame decoded. Every usage frame below must come out alike.
    const done = "data: [DONE]\n\n";
    const usageFrames = [
      'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n',
      'data:{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n', // no space after "data:"
      'data: {"choices" :\t[ ] , "usage" : {"prompt_tokens":3,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1}}}\n\n',
      'event: chunk\ndata: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n', // a second line
      'data: {"choices":[],"x":"é€","usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n', // multi-byte text before the usage
      'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}\n\n', // the object never closes in its frame
      'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1},"choices":[{"index":0,"delta":{"content":"z"}}]}\n\n',
      'data: {"choices":[{"index":0,"delta":{"content":"y"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n',
      'data: {"choices":[],"usage":null}\n\n',
      'data: {"choices":[],"usage":\nnull}\n\n',
    ];
    for (const clientAsked of [false, true]) {
      for (const usage of usageFrames) {
        const text = frame("é€") + usage + done;
        const bytes = Buffer.from(text);
        const whole = sseUsageMeter(clientAsked);
        const inPlace = [whole.pass(bytes), whole.end()].map((p) => (typeof p === "string" ? p : Buffer.from(p).toString("utf8"))).join("");
        const cut = sseUsageMeter(clientAsked);
        const byFrame = [cut.pass(bytes.subarray(0, 3)), cut.pass(bytes.subarray(3)), cut.end()].map((p) => (typeof p === "string" ? p : Buffer.from(p).toString("utf8"))).join("");
        expect(inPlace, usage).toBe(byFrame);
        expect(whole.usage, usage).toEqual(cut.usage);
      }
    }
    // And what the usual usage frame gives: dropped, read.
    const m = sseUsageMeter(false);
    expect(Buffer.from(m.pass(Buffer.from(frame("a") + usageFrames[0] + done))).toString("utf8")).toBe(frame("a") + done);
    expect(m.usage).toEqual({ promptTokens: 3, completionTokens: 1 });
  });

  it("turns frames with \\r\\n line endings into \\n ones", () => {
    const m = sseUsageMeter(false);
    const out = m.pass(Buffer.from(frame("x").replace(/\n/g, "\r\n")));
    expect(out).toBe(frame("x"));
  });
});
