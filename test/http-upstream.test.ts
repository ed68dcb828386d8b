import { describe, expect, it } from "vitest";
import { UpstreamError } from "../src/errors/errors.js";
import { ClientGone } from "../src/proxy/provider.js";
import { HttpUpstream } from "../src/proxy/providers/http-upstream.js";

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
