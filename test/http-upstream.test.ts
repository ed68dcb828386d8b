import { describe, expect, it } from "vitest";
import { UpstreamError } from "../src/errors/errors.js";
import { ClientGone } from "../src/proxy/provider.js";
import { HttpUpstream } from "../src/proxy/providers/http-upstream.js";
import { UpstreamCall } from "../src/proxy/providers/upstream-call.js";

describe("an upstream call undici refuses to send", () => {
  it("fails as an UpstreamError, and lets go of the client's abort signal", async () => {
    const http = new HttpUpstream({ connectTimeoutMs: 1_000, readTimeoutMs: 1_000, connectionsPerOrigin: 1 });
    const signal = new ClientGone();
    try {
      const call = http.post({
        apiBase: "http://127.0.0.1:1/v1",
        path: "/chat/completions",
        // A header value with a line break: undici refuses it before anything is sent.
        headers: { authorization: "Bearer a\r\nb" },
        body: "{}",
        signal,
        readTimeoutMs: undefined,
      });
      await expect(call).rejects.toBeInstanceOf(UpstreamError);
      expect(signal.listenerCount("abort")).toBe(0);
    } finally {
      await http.close();
    }
  });
});

/** undici's side of a call, played by the test: pause and resume are recorded. */
function fakeController() {
  const state = { paused: false, aborted: null as Error | null, pauses: 0, resumes: 0 };
  const controller = {
    get aborted() {
      return state.aborted !== null;
    },
    get paused() {
      return state.paused;
    },
    get reason() {
      return state.aborted;
    },
    abort(reason: Error) {
      state.aborted = reason;
    },
    pause() {
      state.paused = true;
      state.pauses++;
    },
    resume() {
      state.paused = false;
      state.resumes++;
    },
  };
  return { controller, state };
}

function answeredCall() {
  const signal = new ClientGone();
  const call = new UpstreamCall(signal, (err) => err);
  const { controller, state } = fakeController();
  call.onRequestStart(controller);
  call.onResponseStart(controller, 200, { "content-type": "application/json" });
  return { call, controller, state, signal };
}

const KIB = 1024;

describe("a short upstream answer taken whole", () => {
  it("resolves once, at the end, with every chunk in order, however many chunks came before and after the ask", async () => {
    const { call, controller } = answeredCall();
    call.onResponseData(controller, Buffer.from('{"a":'));
    const whole = call.whole(1024 * KIB);
    call.onResponseData(controller, Buffer.from("1,"));
    call.onResponseData(controller, Buffer.from('"b":2}'));
    call.onResponseEnd();
    expect(Buffer.concat((await whole)!).toString()).toBe('{"a":1,"b":2}');
  });

  it("is not held back by backpressure below its limit: a socket paused before the ask is resumed", async () => {
    const { call, controller, state } = answeredCall();
    for (let i = 0; i < 5; i++) call.onResponseData(controller, Buffer.alloc(64 * KIB, i)); // past the 256 KiB high water
    expect(state.paused).toBe(true);
    const whole = call.whole(1024 * KIB);
    expect(state.paused).toBe(false);
    for (let i = 5; i < 10; i++) call.onResponseData(controller, Buffer.alloc(64 * KIB, i));
    expect(state.paused).toBe(false);
    call.onResponseEnd();
    const chunks = (await whole)!;
    expect(chunks.map((c) => c[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("resolves null once the answer is longer than the limit; iterating then reads it all, with backpressure again", async () => {
    const { call, controller, state } = answeredCall();
    const whole = call.whole(256 * KIB);
    for (let i = 0; i < 4; i++) call.onResponseData(controller, Buffer.alloc(64 * KIB, i));
    expect(state.pauses).toBe(0);
    call.onResponseData(controller, Buffer.alloc(64 * KIB, 4));
    expect(await whole).toBeNull();
    expect(state.paused).toBe(true);
    call.onResponseData(controller, Buffer.alloc(64 * KIB, 5));
    call.onResponseEnd();
    const seen: number[] = [];
    for await (const chunk of call) seen.push(chunk[0]!);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5]);
    expect(state.resumes).toBeGreaterThan(0);
  });

  it("an answer already ended is given at once; one that failed, or a client gone, rejects and aborts the call", async () => {
    const ended = answeredCall();
    ended.call.onResponseData(ended.controller, Buffer.from("{}"));
    ended.call.onResponseEnd();
    expect(Buffer.concat((await ended.call.whole(KIB))!).toString()).toBe("{}");

    const failed = answeredCall();
    const whole = failed.call.whole(KIB);
    failed.call.onResponseError(failed.controller, new Error("socket hang up"));
    await expect(whole).rejects.toThrow("socket hang up");

    const left = answeredCall();
    const waiting = left.call.whole(KIB);
    left.signal.abort();
    await expect(waiting).rejects.toMatchObject({ name: "AbortError" });
    expect(left.state.aborted).not.toBeNull();
    expect(left.signal.listenerCount("abort")).toBe(0);
  });
});
