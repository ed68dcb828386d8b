import type { IncomingMessage, ServerResponse } from "node:http";
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { AuthResult } from "../src/auth/authenticator.js";
import { AccessLog, hundredthsText, type RequestRecord } from "../src/http/access-log.js";

/** A logger writing JSON lines into `lines`, as createLogger's does (pid in the bindings, no redaction). */
function capture(options: pino.LoggerOptions = {}) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ base: { pid: 4242 }, ...options }, destination), lines };
}

const flushed = () => new Promise((resolve) => setImmediate(resolve));

describe("the access log line", () => {
  const cases: Array<{ name: string; record: Partial<RequestRecord>; req: object; res: object }> = [
    {
      name: "an answered request with a key and a model",
      record: { requestId: 'id "quoted" \\ and \u2028 \u0001 \ud800 é', auth: { record: { keyName: "sk-...abcd" } } as unknown as AuthResult, model: "gpt-4o" },
      req: { method: "POST", url: "/v1/chat/completions?x=1" },
      res: { statusCode: 200, writableFinished: true },
    },
    {
      name: "a refused request without a key, abandoned by its client",
      record: { requestId: "r-2" },
      req: { method: "GET", url: "/v1/models" },
      res: { statusCode: 401, writableFinished: false },
    },
  ];

  for (const c of cases) {
    it(`is byte for byte what pino writes: ${c.name}`, async () => {
      const fast = capture();
      // A time function of its own sends the access log down pino's own path: the reference.
      const reference = capture({ timestamp: () => `,"time":0` });
      for (const { logger } of [fast, reference]) {
        const log = new AccessLog(logger, undefined);
        log.end(c.req as IncomingMessage, c.res as ServerResponse, "/route", undefined, { startedAt: performance.now(), ...c.record } as RequestRecord);
      }
      await flushed();
      expect(fast.lines).toHaveLength(1);
      expect(reference.lines).toHaveLength(1);
      // The two lines differ only in what the clock gave each.
      const timeless = (line: string) => line.replace(/"time":\d+/, '"time":0').replace(/"latency_ms":[\d.]+/, '"latency_ms":0');
      expect(timeless(fast.lines[0]!)).toBe(timeless(reference.lines[0]!));
      expect(JSON.parse(fast.lines[0]!)).toMatchObject({ level: 30, pid: 4242, msg: "request", route: "/route" });
    });
  }

  it("writes its latency as JSON writes the number of milliseconds", () => {
    const hundredths = [0, 1, 5, 9, 10, 11, 50, 99, 100, 101, 105, 110, 150, 725, 1000, 12_345, 99_999, 100_000, 2_147_483_647, 2_147_483_648, 1e12];
    for (let h = 0; h < 20_000; h += 7) hundredths.push(h);
    for (const h of hundredths) expect(hundredthsText(h), String(h)).toBe(JSON.stringify(h / 100));
    // Not a whole number of hundredths: written as the double it makes, as before.
    expect(hundredthsText(7.5)).toBe("0.075");
  });

  it("is not written when the level leaves info out", async () => {
    const quiet = capture({ level: "warn" });
    new AccessLog(quiet.logger, undefined).end({ method: "GET", url: "/" } as IncomingMessage, { statusCode: 200, writableFinished: true } as ServerResponse, "/", undefined, {
      requestId: "x",
      startedAt: performance.now(),
    });
    await flushed();
    expect(quiet.lines).toEqual([]);
  });
});
