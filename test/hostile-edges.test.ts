import net from "node:net";
import { gzipSync } from "node:zlib";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashKey } from "../src/auth/key-material.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { DEFAULT_TEST_CONFIG, startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { chatBody, openAIError } from "./helpers/http.js";
import { REDIS_URL, waitFor } from "./helpers/services.js";

/**
 * The gateway as an attacker or a careless client meets it (docs/security.md): authentication before the
 * body, timeouts for slow clients, malformed input refused with a 4xx that names the field and writes
 * nothing, unknown keys answered without a database round trip, L2 records that cannot be forged, and upstream
 * refusals told apart from the client's own.
 */
let gw: TestGateway;
let upstream: FakeUpstream;
let key: string;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  const openai = (name: string) => ({ model_name: name, litellm_params: { model: `openai/${name}`, api_base: upstream.url, api_key: "sk-upstream-secret-XyZ9" } });
  gw = await startTestGateway({
    config: {
      ...DEFAULT_TEST_CONFIG,
      model_list: [...DEFAULT_TEST_CONFIG.model_list, ...["unauthorized", "html-error", "redirect", "bad-request", "rate-limited", "stream-crlf", "slow"].map(openai)],
      gatehouse_settings: { server: { headers_timeout_ms: 1_000, request_timeout_ms: 2_000 } },
    },
  });
  key = (await gw.newKey()).key;
}, 60_000);
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/**
 * Sends raw bytes and resolves with what the server answered once it closed the connection, or once what it
 * answered satisfies `until`; `deadlineMs` is only how long to wait for either before giving up (closed: false).
 */
function rawExchange(
  write: (socket: net.Socket) => void,
  deadlineMs: number,
  until: (text: string) => boolean = () => false,
): Promise<{ text: string; closed: boolean; ms: number }> {
  const port = new URL(gw.url).port;
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(Number(port), "127.0.0.1", () => write(socket));
    let text = "";
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      socket.destroy();
      resolve({ text, closed, ms: Date.now() - started });
    };
    socket.on("data", (d) => {
      text += d.toString("utf8");
      if (until(text)) finish(false);
    });
    socket.on("close", () => finish(true));
    socket.on("error", () => finish(true));
    const deadline = setTimeout(() => finish(false), deadlineMs);
  });
}

describe("authenticate first, then read the body", () => {
  it("an unauthenticated malformed body is 401, not 400", async () => {
    const res = await gw.call("/v1/chat/completions", { rawBody: "{bad" });
    expect(res.status).toBe(401);
    const wrongKey = await gw.call("/v1/chat/completions", { key: "sk-not-a-key-at-all-0000000000000000", rawBody: "{bad" });
    expect(wrongKey.status).toBe(401);
  });

  it("an unauthenticated 9 MB upload is answered 401 before its body arrives", async () => {
    const { text } = await rawExchange(
      (s) => {
        s.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9437184\r\n\r\n");
        s.write(Buffer.alloc(1024, 0x20)); // a kilobyte of the 9 MB, then nothing
      },
      3_000,
      (answered) => answered.includes("\r\n\r\n"), // the status line and headers are in
    );
    expect(text).toMatch(/^HTTP\/1\.1 401/);
  });

  it("a body that does not decode with its Content-Encoding is 401 without a key, 400 with one", async () => {
    const garbage = { rawBody: "this is not gzip", headers: { "content-encoding": "gzip", "content-type": "application/json" } };
    expect((await gw.call("/v1/chat/completions", garbage)).status).toBe(401);
    const res = await gw.call("/v1/chat/completions", { key, ...garbage });
    expect(res.status).toBe(400);
    expect(openAIError(res.body).code).toBe("invalid_encoding");
    // A body that does decode works.
    const ok = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify(chatBody("mock-gpt"))),
    });
    expect(ok.status).toBe(200);
  });
});

describe("server timeouts for slow clients (set to 1 s for headers, 2 s for the whole request here)", () => {
  it("headers that never finish: the connection is closed", async () => {
    const { closed, ms } = await rawExchange((s) => s.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"), 6_000);
    expect(closed).toBe(true);
    expect(ms).toBeLessThan(4_000);
  });

  it("a body that never finishes: 408 and closed", async () => {
    const { text, closed, ms } = await rawExchange((s) => {
      s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":`);
    }, 8_000);
    expect(closed).toBe(true);
    expect(ms).toBeLessThan(5_000);
    expect(text).toMatch(/^HTTP\/1\.1 408/);
  });

  it("a response that takes longer than the request timeout is not cut", async () => {
    upstream.slowMs = 2_600;
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("slow") });
    expect(res.status).toBe(200);
  }, 10_000);
});

describe("malformed input: a 4xx naming the field, never a 500, nothing written", () => {
  const nul = "a\u0000b";

  it("the NUL character in key_alias, metadata, user_id (generate, update, regenerate), list and delete", async () => {
    const k = await gw.newKey();
    const cases: Array<[string, unknown, string]> = [
      ["/key/generate", { key_alias: nul }, "key_alias"],
      ["/key/generate", { metadata: { note: nul } }, "metadata"],
      ["/key/generate", { metadata: { [nul]: 1 } }, "metadata"],
      ["/key/generate", { user_id: nul }, "user_id"],
      ["/key/update", { key: k.key, key_alias: nul }, "key_alias"],
      ["/key/update", { key: k.key, metadata: { deep: [nul] } }, "metadata"],
      [`/key/${k.key}/regenerate`, { user_id: nul }, "user_id"],
      ["/key/delete", { key_aliases: [nul] }, "key_aliases.0"],
    ];
    const before = await gw.gateway.pool.query("SELECT count(*)::int AS n, max(version) AS v FROM gh_keys");
    for (const [path, body, param] of cases) {
      const res = await gw.admin(path, body);
      expect(res.status, `${path} ${JSON.stringify(body)}: ${res.text}`).toBe(400);
      expect(openAIError(res.body).param).toBe(param);
    }
    const list = await gw.admin(`/key/list?key_alias=${encodeURIComponent(nul)}`);
    expect(list.status).toBe(400);
    expect(openAIError(list.body).param).toBe("key_alias");
    const after = await gw.gateway.pool.query("SELECT count(*)::int AS n, max(version) AS v FROM gh_keys");
    expect(after.rows[0]).toEqual(before.rows[0]);
  });

  it("an unpaired UTF-16 surrogate in any id, name or metadata is a 400 naming the field, and nothing is created", async () => {
    // Written as JSON escapes, as the bytes on the wire must be: UTF-8 cannot carry a lone surrogate otherwise.
    const cases: Array<[string, string, string | null]> = [
      ["/team/new", '{"team_id": "x\\ud800"}', "team_id"],
      ["/team/new", '{"team_id": "x\\udc00"}', "team_id"],
      ["/team/new", '{"team_alias": "\\ude00\\ud83d"}', "team_alias"],
      ["/user/new", '{"user_id": "u\\udbff"}', "user_id"],
      ["/key/generate", '{"key_alias": "k\\ud800"}', "key_alias"],
      ["/key/generate", '{"models": ["mock-gpt", "m\\udfff"]}', "models.1"],
      ["/key/generate", '{"metadata": {"deep": [{"note": "\\ud800"}]}}', "metadata.deep.0.note"],
      ["/key/generate", '{"metadata": {"n\\ud800": 1}}', "metadata"],
      ["/key/generate", '{"x\\ud800": 1}', null],
      ["/model/new", '{"model_name": "m\\ud800", "litellm_params": {"model": "mock/m"}}', "model_name"],
    ];
    const count = async () =>
      (
        await gw.gateway.pool.query(
          "SELECT (SELECT count(*) FROM gh_teams) + (SELECT count(*) FROM gh_users) + (SELECT count(*) FROM gh_keys) + (SELECT count(*) FROM gh_models) AS n",
        )
      ).rows[0].n;
    const before = await count();
    for (const [path, rawBody, param] of cases) {
      const res = await gw.admin(path, undefined, { rawBody });
      expect(res.status, `${path} ${rawBody}: ${res.text}`).toBe(400);
      const e = openAIError(res.body);
      expect(e).toMatchObject({ param, code: "unpaired_surrogate" });
      expect(e.message).toContain("unpaired UTF-16 surrogate");
    }
    expect(await count()).toBe(before);
    // A surrogate pair is a character like any other (an emoji, escaped).
    const paired = await gw.admin("/team/new", undefined, { rawBody: `{"team_id": "paired-${Date.now()}-\\ud83d\\ude00"}` });
    expect(paired.status, paired.text).toBe(200);
    expect(paired.body.team_id).toMatch(/-😀$/);
    // Paths and query strings are percent-encoded UTF-8, which cannot encode a lone surrogate (ED A0 80 is not UTF-8).
    expect(openAIError((await gw.admin("/key/x%ED%A0%80/regenerate", {})).body).code).toBe("invalid_path");
    expect((await gw.admin("/team/info?team_id=x%ED%A0%80")).status).toBe(404);
  });

  it("metadata nested 5,000 levels deep is a 400 (depth limit), not a stack overflow", async () => {
    const deep = `${'{"a":'.repeat(5_000)}1${"}".repeat(5_000)}`;
    const res = await gw.call("/key/generate", { key: gw.masterKey, rawBody: `{"metadata":${deep}}` });
    expect(res.status).toBe(400);
    expect(openAIError(res.body)).toMatchObject({ param: "metadata" });
    expect(openAIError(res.body).message).toContain("deeper than 32");
  });

  it("a path with bad percent-encoding is a 400, and the path is never logged", async () => {
    const res = await gw.admin("/key/sk-secret-in-path%ZZ/regenerate", {});
    expect(res.status).toBe(400);
    expect(openAIError(res.body).code).toBe("invalid_path");
    await waitFor(() => gw.logs.lines.some((l) => l.includes('"status":400') && l.includes("percent-encoded")), { what: "the request's log line" });
    expect(gw.logs.lines.filter((l) => l.includes("sk-secret-in-path"))).toEqual([]);
    expect(gw.logs.entries().filter((e) => e.msg === "unhandled error")).toEqual([]);
  });

  it("request shapes OpenAI refuses are refused here, with param naming the field", async () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ["/v1/chat/completions", { model: "mock-gpt", messages: "hello" }, "messages"],
      ["/v1/chat/completions", { model: "mock-gpt", messages: [] }, "messages"],
      ["/v1/chat/completions", { model: "mock-gpt", messages: [{ content: "no role" }] }, "messages[0].role"],
      ["/v1/chat/completions", { model: "mock-gpt", messages: [{ role: "user", content: "hi" }, 7] }, "messages[1]"],
      ["/v1/chat/completions", { ...chatBody("mock-gpt"), max_tokens: -1 }, "max_tokens"],
      ["/v1/completions", { model: "mock-gpt" }, "prompt"],
      ["/v1/embeddings", { model: "mock-embedding" }, "input"],
    ];
    for (const [path, body, param] of cases) {
      const res = await gw.call(path, { key, body });
      expect(res.status, `${JSON.stringify(body)}: ${res.text}`).toBe(400);
      expect(openAIError(res.body).param).toBe(param);
    }
    // Unknown fields a newer upstream may accept pass through.
    expect((await gw.call("/v1/chat/completions", { key, body: { ...chatBody("mock-gpt"), some_future_option: { x: 1 } } })).status).toBe(200);
  });

  it("duplicate top-level keys are refused: a body cannot be authorised as one model and served as another", async () => {
    const narrow = await gw.newKey({ models: ["mock-gpt"] });
    const raw = '{"model":"mock-other","messages":[{"role":"user","content":"hi"}],"model":"mock-gpt"}';
    const res = await gw.call("/v1/chat/completions", { key: narrow.key, rawBody: raw });
    expect(res.status).toBe(400);
    expect(openAIError(res.body)).toMatchObject({ code: "duplicate_field", param: "model" });
    const escaped = '{"model":"mock-other","messages":[{"role":"user","content":"hi"}],"mod\\u0065l":"mock-gpt"}';
    expect((await gw.call("/v1/chat/completions", { key: narrow.key, rawBody: escaped })).status).toBe(400);
    // Repeated keys deeper down are JSON's business, not a model switch: allowed.
    const nested = '{"model":"mock-gpt","messages":[{"role":"user","content":"a","role":"user"}]}';
    expect((await gw.call("/v1/chat/completions", { key: narrow.key, rawBody: nested })).status).toBe(200);
  });

  it("custom keys shorter than 32 characters after sk- are refused", async () => {
    const short = await gw.admin("/key/generate", { key: "sk-12345678" });
    expect(short.status).toBe(400);
    expect(openAIError(short.body).param).toBe("key");
    expect((await gw.admin("/key/generate", { key: `sk-${"0123456789abcdef".repeat(2)}` })).status).toBe(200);
  });

  it("a mock model's answer is bounded, whatever it is asked", async () => {
    const res = await gw.call("/v1/embeddings", { key, body: { model: "mock-embedding", input: Array.from({ length: 3_000 }, () => "x"), dimensions: 4096 } });
    expect(res.status).toBe(400);
    expect(res.text.length).toBeLessThan(1_000);
  });
});

describe("floods of unknown keys", () => {
  it("random unknown keys are answered 401 without a database look-up of their own", async () => {
    await waitFor(() => gw.gateway.authenticator.counters !== undefined && gw.gateway.tokenFilter.current !== null, { what: "the token filter to be built" });
    const before = { ...gw.gateway.authenticator.counters };
    const checks = () => (gw.gateway.coherence.status() as unknown as { unknown_tokens: { asked: number; catchUpsAsked: number } }).unknown_tokens;
    const checksBefore = { ...checks() };
    const statuses = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        gw.call("/v1/chat/completions", { key: `sk-random-${i}-${Math.random().toString(36).slice(2)}-padding-padding`, body: chatBody("mock-gpt") }).then((r) => r.status),
      ),
    );
    expect(statuses.every((s) => s === 401)).toBe(true);
    const after = gw.gateway.authenticator.counters;
    expect(after.filtered - before.filtered).toBeGreaterThanOrEqual(285);
    // A false positive of the filter (0.1 %) goes to the full look-up as before: a handful in all.
    expect(after.db + after.misses - before.db - before.misses).toBeLessThanOrEqual(15);
    // The rest waited for this replica to catch up on the events committed before them (a key generated elsewhere
    // would have been noted): the heartbeat's catch-up, and one more asked for every 150 waiting.
    expect(checks().asked - checksBefore.asked).toBeGreaterThanOrEqual(285);
    expect(checks().catchUpsAsked - checksBefore.catchUpsAsked).toBeLessThanOrEqual(2);
  });

  it("a key generated just now works at once (on this replica its event added it; elsewhere its event is awaited before an unknown token is refused)", async () => {
    const k = await gw.admin("/key/generate", {});
    expect((await gw.call("/v1/chat/completions", { key: k.body.key, body: chatBody("mock-gpt") })).status).toBe(200);
  });
});

describe("the shared cache cannot mint keys", () => {
  let plain: TestGateway;
  beforeAll(async () => {
    // The token filter would refuse these never-issued tokens before L2 is read: off here, to reach L2.
    plain = await startTestGateway({ config: { ...DEFAULT_TEST_CONFIG, gatehouse_settings: { auth: { token_filter_rebuild_ms: 0 } } } });
  }, 60_000);
  afterAll(async () => {
    await plain?.close();
  });

  it("an auth record written into Redis by hand is a miss, counted and logged once", async () => {
    const forged = "sk-forged-by-someone-with-redis-access-0000";
    const record = (token: string) => ({
      token,
      keyId: "00000000-0000-0000-0000-000000000001",
      keyName: "sk-...0000",
      keyAlias: null,
      models: [],
      userId: null,
      teamId: null,
      expiresAt: null,
      blocked: false,
      maxBudget: null,
      tpmLimit: null,
      rpmLimit: null,
      maxParallelRequests: null,
      version: 999999,
      revokeAt: null,
    });
    const redis = new Redis(REDIS_URL);
    try {
      // Without a MAC (the format before records were authenticated), and with a wrong one.
      await redis.set(plain.gateway.redisKeys.authRecord(hashKey(forged)), `999999|${JSON.stringify(record(hashKey(forged)))}`);
      await redis.set(plain.gateway.redisKeys.authRecord(hashKey(`${forged}-2`)), `999999|bm90LWEtbWFj|${JSON.stringify(record(hashKey(`${forged}-2`)))}`);
    } finally {
      redis.disconnect();
    }
    await waitFor(async () => (await plain.admin("/debug/coherence")).body.l2.trusted === true, { what: "L2 to be trusted" });
    expect((await plain.call("/v1/chat/completions", { key: forged, body: chatBody("mock-gpt") })).status).toBe(401);
    expect((await plain.call("/v1/chat/completions", { key: `${forged}-2`, body: chatBody("mock-gpt") })).status).toBe(401);
    const metrics = await plain.call("/metrics", { key: plain.masterKey });
    expect(metrics.text).toMatch(/gatehouse_l2_forged_records_total 2/);
    expect(plain.logs.entries().filter((e) => e.msg?.includes("failed its authentication check"))).toHaveLength(1);
    // A record the gateway wrote itself is read back (the MAC checks out).
    const real = await plain.newKey();
    expect((await plain.call("/v1/chat/completions", { key: real.key, body: chatBody("mock-gpt") })).status).toBe(200);
  });
});

describe("upstream answers", () => {
  it("the upstream refusing the gateway's own credentials is a 502, without upstream's message, and the operator hears of it", async () => {
    const res = await gw.call("/v1/chat/completions", { key, body: chatBody("unauthorized") });
    expect(res.status).toBe(502);
    expect(openAIError(res.body).code).toBe("upstream_auth_failed");
    expect(res.text).not.toContain("sk-upstr");
    expect(res.text).not.toContain("XyZ9");
    await waitFor(() => gw.logs.entries().some((e) => e.msg?.includes("refused this gateway's credentials") && e.model === "unauthorized"), { what: "the operator's log line" });
    expect(gw.logs.lines.filter((l) => l.includes("sk-upstr") || l.includes("sk-upstream-secret"))).toEqual([]);
  });

  it("an upstream 5xx HTML page and a redirect become a short 502; a 400 about the request and a 429 are relayed", async () => {
    const html = await gw.call("/v1/chat/completions", { key, body: chatBody("html-error") });
    expect(html.status).toBe(502);
    expect(html.text).not.toContain("<html");
    const redirect = await gw.call("/v1/chat/completions", { key, body: chatBody("redirect") });
    expect(redirect.status).toBe(502);
    expect(openAIError(redirect.body).code).toBe("upstream_bad_response");
    const bad = await gw.call("/v1/chat/completions", { key, body: chatBody("bad-request") });
    expect(bad.status).toBe(400);
    expect(openAIError(bad.body)).toMatchObject({ param: "temperature", code: "invalid_value" });
    const limited = await gw.call("/v1/chat/completions", { key, body: chatBody("rate-limited") });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("7");
  });

  it("a stream framed with \\r\\n\\r\\n is relayed frame by frame and its usage is read", async () => {
    const priced = await gw.newKey({ max_budget: 100 });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${priced.key}`, "content-type": "application/json" },
      body: JSON.stringify({ ...chatBody("stream-crlf"), stream: true }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    // The first frame arrives on its own: upstream sends the rest only once it is released, after this read.
    expect(new TextDecoder().decode(first.value)).toContain("hello");
    upstream.releaseNext();
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    expect(rest).toContain("world");
    expect(rest).not.toContain('"usage"'); // the client did not ask for usage: the gateway's own request is hidden
  });

  it("a client that goes away before upstream answers is not an error in the log", async () => {
    upstream.slowMs = 1_000;
    const logged = gw.logs.lines.length;
    const sent = upstream.requests.length;
    const abort = new AbortController();
    const pending = fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("slow")),
      signal: abort.signal,
    }).catch(() => null);
    // The client leaves once the gateway's upstream call is under way (upstream answers only after a second).
    await waitFor(() => upstream.requests.length > sent, { what: "the upstream call to begin" });
    abort.abort();
    await pending;
    await waitFor(() => upstream.abortedRequests > 0, { what: "the upstream call to be aborted" });
    await waitFor(
      () =>
        gw.logs
          .entries()
          .slice(logged)
          .some((e) => e.msg === "request"),
      { what: "the request's log line" },
    );
    expect(
      gw.logs
        .entries()
        .slice(logged)
        .filter((e) => e.level >= 40),
    ).toEqual([]);
  });
});

describe("an upstream key goes in api_key, never in api_base (docs/models.md)", () => {
  const IN_URL = "hunter2-in-url";

  it("/model/new and /model/update refuse credentials in api_base with a 400 naming it, and write nothing", async () => {
    const added = await gw.admin("/model/new", { model_name: "clean-base", litellm_params: { model: "openai/echo", api_base: upstream.url } });
    expect(added.status, added.text).toBe(200);
    const before = await gw.gateway.pool.query("SELECT count(*)::int AS n, max(version) AS v FROM gh_models");
    for (const apiBase of [
      `http://user:${IN_URL}@127.0.0.1:9/v1`,
      `http://${IN_URL}@127.0.0.1:9/v1`,
      `http://127.0.0.1:9/v1?key=${IN_URL}`,
      `http://127.0.0.1:9/openai?api-key=${IN_URL}`,
    ]) {
      const created = await gw.admin("/model/new", { model_name: "creds-in-url", litellm_params: { model: "openai/echo", api_base: apiBase } });
      const updated = await gw.admin("/model/update", { model_id: added.body.model_id, litellm_params: { api_base: apiBase, api_key: "sk-upstream-new-0123456789" } });
      for (const res of [created, updated]) {
        expect(res.status, `${apiBase}: ${res.text}`).toBe(400);
        const e = openAIError(res.body);
        expect(e.param).toBe("litellm_params.api_base");
        expect(e.message).toContain("api_key");
        expect(res.text).not.toContain(IN_URL);
      }
    }
    const after = await gw.gateway.pool.query("SELECT count(*)::int AS n, max(version) AS v FROM gh_models");
    expect(after.rows[0]).toEqual(before.rows[0]);
  });

  it("a model stored before that rule is shown, listed and logged without them (and never sent them upstream)", async () => {
    const secret = "sk-upstream-db-secret-0123456789";
    const added = await gw.admin("/model/new", { model_name: "old-creds", litellm_params: { model: "openai/unauthorized", api_base: upstream.url, api_key: secret } });
    expect(added.status, added.text).toBe(200);
    const port = new URL(upstream.url).port;
    await gw.gateway.pool.query("UPDATE gh_models SET params = jsonb_set(params, '{api_base}', to_jsonb($2::text)) WHERE model_id = $1", [
      added.body.model_id,
      `http://user:${IN_URL}@127.0.0.1:${port}/v1?key=${IN_URL}#${IN_URL}`,
    ]);
    // Any model change makes every replica read the database models again.
    expect((await gw.admin("/model/new", { model_name: "reload-trigger", litellm_params: { model: "mock/x" } })).status).toBe(200);
    const served = await gw.call("/v1/chat/completions", { key, body: chatBody("old-creds") });
    expect(served.status).toBe(502);
    expect(openAIError(served.body).code).toBe("upstream_auth_failed");
    const sent = upstream.requests.at(-1)!;
    expect(sent.path).toBe("/v1/chat/completions");
    expect(sent.headers.authorization).toBe(`Bearer ${secret}`);
    await waitFor(() => gw.logs.entries().some((e) => e.msg?.includes("refused this gateway's credentials") && e.model === "old-creds"), { what: "the operator's log line" });
    const logged = gw.logs.entries().find((e) => e.msg?.includes("refused this gateway's credentials") && e.model === "old-creds")!;
    expect(logged.api_base).toBe(`http://127.0.0.1:${port}/v1`);
    for (const path of ["/model/info", "/v1/model/info", "/health"]) {
      const res = await gw.admin(path);
      expect(res.status, `${path}: ${res.text}`).toBe(200);
      expect(res.text, path).not.toContain(IN_URL);
    }
    const info = (await gw.admin("/model/info")).body.data.find((m: any) => m.model_name === "old-creds");
    expect(info.litellm_params.api_base).toBe(`http://127.0.0.1:${port}/v1`);
    expect(gw.logs.lines.filter((l) => l.includes(IN_URL) || l.includes(secret))).toEqual([]);
  });
});

describe("a price Gatehouse does not read is refused, never a free model (docs/configuration.md)", () => {
  it("/model/new and /model/update name the field and the price it meant, and write nothing", async () => {
    const added = await gw.admin("/model/new", { model_name: "priced", litellm_params: { model: "mock/priced", input_cost_per_token: 0.000001 } });
    expect(added.status, added.text).toBe(200);
    const before = await gw.gateway.pool.query("SELECT count(*)::int AS n, max(version) AS v FROM gh_models");
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      [
        "/model/new",
        { model_name: "typo", litellm_params: { model: "mock/typo", input_cost_per_tokn: 0.000001 } },
        "litellm_params.input_cost_per_tokn",
        "did you mean litellm_params.input_cost_per_token?",
      ],
      [
        "/model/new",
        { model_name: "per-second", litellm_params: { model: "mock/s", input_cost_per_second: 0.0004 } },
        "litellm_params.input_cost_per_second",
        "Gatehouse prices by input_cost_per_token",
      ],
      [
        "/model/new",
        { model_name: "in-info", litellm_params: { model: "mock/i" }, model_info: { output_cost_per_token: 1 } },
        "model_info.output_cost_per_token",
        "move it to litellm_params.output_cost_per_token",
      ],
      [
        "/model/update",
        { model_id: added.body.model_id, litellm_params: { output_cost_per_tokens: 0.000002 } },
        "litellm_params.output_cost_per_tokens",
        "did you mean litellm_params.output_cost_per_token?",
      ],
    ];
    for (const [path, body, param, hint] of cases) {
      const res = await gw.admin(path, body);
      expect(res.status, `${path} ${JSON.stringify(body)}: ${res.text}`).toBe(400);
      const e = openAIError(res.body);
      expect(e).toMatchObject({ param, code: "unread_price" });
      expect(e.message).toContain("the model would be served free");
      expect(e.message).toContain(hint);
    }
    const after = await gw.gateway.pool.query("SELECT count(*)::int AS n, max(version) AS v FROM gh_models");
    expect(after.rows[0]).toEqual(before.rows[0]);
  });
});

describe("answers that hold a plaintext key are never cached", () => {
  it("key generation, rotation (both routes), a user's first key and an Idempotency-Key replay say no-store", async () => {
    const idempotent = { headers: { "idempotency-key": `no-store-${Date.now()}` } };
    const generated = await gw.admin("/key/generate", { key_alias: `no-store-${Date.now()}` }, idempotent);
    const replayed = await gw.admin("/key/generate", { key_alias: generated.body.key_alias }, idempotent);
    expect(replayed.body.key).toBe(generated.body.key);
    const rotatedByBody = await gw.admin("/key/regenerate", { key: generated.body.key });
    const rotatedByPath = await gw.admin(`/key/${rotatedByBody.body.key}/regenerate`, {});
    const user = await gw.admin("/user/new", {});
    const answers = { generated, replayed, rotatedByBody, rotatedByPath, user };
    for (const [what, res] of Object.entries(answers)) {
      expect(res.status, `${what}: ${res.text}`).toBe(200);
      expect(res.body.key, what).toMatch(/^sk-/);
      expect(res.headers.get("cache-control"), what).toBe("no-store");
      expect(res.headers.get("pragma"), what).toBe("no-cache");
    }
  });

  it("so does every other admin answer, refusals included", async () => {
    const answers: Array<[number, Awaited<ReturnType<typeof gw.admin>>]> = [
      [200, await gw.admin("/key/list")],
      [400, await gw.admin("/key/generate", { max_budgett: 1 })],
      [401, await gw.call("/key/generate", { body: {} })],
      [200, await gw.admin("/team/list")],
      [200, await gw.admin("/model/info")],
    ];
    for (const [status, res] of answers) {
      expect(res.status, res.text).toBe(status);
      expect(res.headers.get("cache-control"), res.text).toBe("no-store");
    }
  });
});

describe("small ones", () => {
  it("x-api-key authenticates, as LiteLLM accepts", async () => {
    const res = await gw.call("/v1/chat/completions", { body: chatBody("mock-gpt"), headers: { "x-api-key": key } });
    expect(res.status).toBe(200);
  });

  it("GET /v1/models/{id} answers for a model the key may use, 404 otherwise", async () => {
    const narrow = await gw.newKey({ models: ["mock-gpt"] });
    const ok = await gw.call("/v1/models/mock-gpt", { key: narrow.key });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ id: "mock-gpt", object: "model" });
    expect((await gw.call("/v1/models/mock-embedding", { key: narrow.key })).status).toBe(404);
    expect((await gw.call("/v1/models/no-such-model", { key: narrow.key })).status).toBe(404);
  });

  it("the master key may call models, logged as master-key", async () => {
    const res = await gw.call("/v1/chat/completions", { key: gw.masterKey, body: chatBody("mock-gpt") });
    expect(res.status).toBe(200);
    await waitFor(() => gw.logs.entries().some((e) => e.msg === "request" && e.key_name === "master-key"), { what: "the request's log line" });
    expect(gw.logs.lines.filter((l) => l.includes(gw.masterKey))).toEqual([]);
  });
});

describe("the master key on the OpenAI routes can be forbidden", () => {
  let strict: TestGateway;
  beforeAll(async () => {
    strict = await startTestGateway({ config: { ...DEFAULT_TEST_CONFIG, gatehouse_settings: { server: { master_key_on_proxy: "forbid" } } } });
  }, 60_000);
  afterAll(async () => {
    await strict?.close();
  });

  it("answers 403 master_key_not_allowed", async () => {
    const res = await strict.call("/v1/chat/completions", { key: strict.masterKey, body: chatBody("mock-gpt") });
    expect(res.status).toBe(403);
    expect(openAIError(res.body).code).toBe("master_key_not_allowed");
  });
});
