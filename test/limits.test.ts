import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { Redis } from "ioredis";
import { chatBody, openAIError } from "./helpers/http.js";
import { REDIS_URL, waitFor } from "./helpers/services.js";
import type { RequestLimits } from "../src/limits/admission.js";
import { RedisLimiter } from "../src/limits/redis-limiter.js";
import { RedisServerIdentity } from "../src/redis/server-identity.js";
import { randomUUID } from "node:crypto";

/** Prices chosen so costs are exact in binary floating point: sums compare with toBe, not toBeCloseTo. */
const INPUT_COST = 0.0009765625; // 2^-10
const OUTPUT_COST = 0.001953125; // 2^-9

function pricedConfig(upstreamUrl: string): ConfigFile {
  return {
    model_list: [
      { model_name: "priced-gpt", litellm_params: { model: "mock/priced-gpt", input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST } },
      { model_name: "priced-embedding", litellm_params: { model: "mock/priced-embedding", input_cost_per_token: INPUT_COST } },
      { model_name: "free-gpt", litellm_params: { model: "mock/free-gpt" } },
      { model_name: "gated", litellm_params: { model: "openai/stream-gated", api_base: upstreamUrl, input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST } },
      { model_name: "broken", litellm_params: { model: "openai/broken", api_base: upstreamUrl, input_cost_per_token: INPUT_COST } },
    ],
    gatehouse_settings: { upkeep: { sweep_interval_ms: 200 }, limits: { flush_interval_ms: 100, prefetch_max_age_ms: 500 } },
  };
}

function costOf(usage: { prompt_tokens: number; completion_tokens?: number }): number {
  return usage.prompt_tokens * INPUT_COST + (usage.completion_tokens ?? 0) * OUTPUT_COST;
}

/** The key's spend as Postgres has it, once every replica's queued charges are flushed. */
async function durableSpend(gw: TestGateway, token: string): Promise<number> {
  // The first call may join the periodic flush already under way (its batch formed before the last charge);
  // the second writes everything queued by then.
  await gw.gateway.spendLedger.flush();
  await gw.gateway.spendLedger.flush();
  const { rows } = await gw.gateway.pool.query("SELECT spend FROM gh_keys WHERE token = $1", [token]);
  return rows[0].spend;
}

let upstream: FakeUpstream;
let gw: TestGateway;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  gw = await startTestGateway({ config: pricedConfig(upstream.url) });
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

async function sseEvents(res: Response): Promise<any[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((f) => f.startsWith("data: ") && f !== "data: [DONE]")
    .map((f) => JSON.parse(f.slice(6)));
}

function stream(key: string, body: Record<string, unknown>) {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
}

describe("spend: usage × the model's price, live and durable", () => {
  it("charges each request its usage at the config's prices; /key/info and Postgres agree on the sum", async () => {
    const k = await gw.newKey({ max_budget: 1_000 });
    let expected = 0;
    for (const content of ["hi", "a longer prompt with more tokens in it", "x".repeat(400)]) {
      const res = await gw.call("/v1/chat/completions", { key: k.key, body: { model: "priced-gpt", messages: [{ role: "user", content }] } });
      expect(res.status).toBe(200);
      expected += costOf(res.body.usage);
    }
    const emb = await gw.call("/v1/embeddings", { key: k.key, body: { model: "priced-embedding", input: ["one", "two"] } });
    expect(emb.status).toBe(200);
    expected += costOf(emb.body.usage);
    expect(expected).toBeGreaterThan(0);

    const info = await gw.admin(`/key/info?key=${k.key}`);
    expect(info.body.info.spend).toBe(expected); // live (Redis), before any flush
    expect(await durableSpend(gw, k.token)).toBe(expected);
    expect((await gw.admin(`/key/info?key=${k.key}`)).body.info.durable_spend).toBe(expected);
  });

  it("a key without limits is charged too, without touching Redis; a free model charges nothing", async () => {
    const k = await gw.newKey();
    const res = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") });
    const free = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") });
    expect(free.status).toBe(200);
    expect(await durableSpend(gw, k.token)).toBe(costOf(res.body.usage));
    expect(await gw.gateway.redis!.exists(gw.gateway.redisKeys.limits(k.key_id).ledger)).toBe(0);
  });

  it("streams are charged from the final usage chunk, which a client that did not ask for it never sees", async () => {
    const k = await gw.newKey({ max_budget: 1_000 });
    const body = { model: "priced-gpt", messages: [{ role: "user", content: "stream me something" }] };
    const asked = await sseEvents(await stream(k.key, { ...body, stream_options: { include_usage: true } }));
    const usage = asked.at(-1).usage;
    expect(usage.prompt_tokens).toBeGreaterThan(0);
    expect(await durableSpend(gw, k.token)).toBe(costOf(usage));

    const plain = await sseEvents(await stream(k.key, body));
    expect(plain.length).toBeGreaterThan(1);
    expect(plain.some((e) => "usage" in e)).toBe(false);
    expect(await durableSpend(gw, k.token)).toBe(2 * costOf(usage));
  });

  it("a request without usage (upstream sent none) is charged its reservation: body bytes / 4 + max_tokens", async () => {
    const k = await gw.newKey({ max_budget: 1_000 });
    const body = { model: "gated", messages: [{ role: "user", content: "no usage here" }], max_tokens: 10, stream: true };
    const bytes = Buffer.byteLength(JSON.stringify(body));
    upstream.releaseNext();
    upstream.releaseNext();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    await res.text();
    expect(await durableSpend(gw, k.token)).toBe(Math.ceil(bytes / 4) * INPUT_COST + 10 * OUTPUT_COST);
  });

  it("an upstream failure charges nothing and releases the reservation", async () => {
    const k = await gw.newKey({ max_parallel_requests: 1, max_budget: 1_000 });
    for (let i = 0; i < 3; i++) expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("broken") })).status).toBe(502);
    expect(await durableSpend(gw, k.token)).toBe(0);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") })).status).toBe(200);
  });
});

describe("limits on one replica", () => {
  it("over budget: 400 with LiteLLM's budget error once the spend reaches max_budget", async () => {
    const k = await gw.newKey({ max_budget: 0.01 });
    let status = 200;
    let n = 0;
    let last: any;
    while (status === 200 && n < 100) {
      last = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt", { max_tokens: 20 }) });
      status = last.status;
      n++;
    }
    expect(status).toBe(400);
    expect(openAIError(last.body)).toMatchObject({ type: "budget_exceeded", code: "budget_exceeded" });
    expect(last.body.error.message).toMatch(/^Budget has been exceeded! Key=[0-9a-f-]{36} Current cost: [\d.e-]+, Max budget: 0\.01$/);
    const spend = await durableSpend(gw, k.token);
    expect(spend).toBeGreaterThanOrEqual(0.01);
  });

  it("rpm_limit: 429 with Retry-After and x-ratelimit-* headers after the limit", async () => {
    const k = await gw.newKey({ rpm_limit: 3 });
    const remaining: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ratelimit-limit-requests")).toBe("3");
      remaining.push(res.headers.get("x-ratelimit-remaining-requests")!);
    }
    expect(remaining).toEqual(["2", "1", "0"]);
    const refused = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") });
    expect(refused.status).toBe(429);
    expect(openAIError(refused.body)).toMatchObject({ type: "rate_limit_error", code: "rate_limit_exceeded" });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0");
  });

  it("rpm_limit above 1,000 is smoothed (two minutes, no per-request log in Redis) and still exact within a minute", async () => {
    const keys = gw.gateway.redisKeys;
    const limiter = new RedisLimiter(
      gw.gateway.redis!,
      keys,
      { read: async () => ({ spend: 0, generation: "0" }) },
      60_000,
      gw.gateway.breakers.redis,
      new RedisServerIdentity(gw.gateway.redis!),
    );
    const keyId = randomUUID();
    const key = { level: "key" as const, id: keyId, ledger: keyId, maxBudget: null, rpmLimit: 1_200, tpmLimit: null, maxParallelRequests: null };
    // A key's own limits, as request-limits.ts builds them (admissions held ready under the key's id).
    const limits: RequestLimits = { keyId, heldAs: keyId, subjects: [key], owners: [key] };
    // Stay inside one minute: across a boundary the previous minute's count decays by design. Within 5 s of one,
    // start once the next minute has begun.
    await waitFor(() => Date.now() % 60_000 <= 55_000, { timeoutMs: 6_000, intervalMs: 50, what: "a minute with 5 s left in it" });
    const kinds: string[] = [];
    for (let i = 0; i < 1_201; i++) {
      const a = await limiter.admit(limits, { requestId: randomUUID(), cost: 0, tokens: 1 });
      kinds.push(a.kind);
    }
    expect(kinds.filter((k) => k === "ok").length).toBe(1_200);
    expect(kinds.at(-1)).toBe("rpm");
    expect(await gw.gateway.redis!.exists(keys.limits(limits.keyId).requests)).toBe(0);
  });

  it("tpm_limit: the worst case is counted at admission and corrected to the actual tokens after", async () => {
    const k = await gw.newKey({ tpm_limit: 100 });
    // Reserving 1,000 completion tokens would exceed the limit at once; the actual usage is small, so
    // after settling, the next request is admitted again.
    const first = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt", { max_tokens: 1_000 }) });
    expect(first.status).toBe(200);
    const second = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt", { max_tokens: 10 }) });
    expect(second.status).toBe(200);
    let refused: any;
    for (let i = 0; i < 20 && !refused; i++) {
      const res = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt", { max_tokens: 10 }) });
      if (res.status === 429) refused = res;
    }
    expect(refused).toBeDefined();
    expect(openAIError(refused.body).code).toBe("tokens_rate_limit_exceeded");
    expect(refused.headers.get("x-ratelimit-limit-tokens")).toBe("100");
  });

  it("max_parallel_requests: a second request while one is in flight gets 429; after it ends, it passes", async () => {
    const k = await gw.newKey({ max_parallel_requests: 1 });
    const body = { model: "gated", messages: [{ role: "user", content: "hold" }], stream: true };
    const first = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(first.status).toBe(200);
    const second = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") });
    expect(second.status).toBe(429);
    expect(openAIError(second.body).code).toBe("parallel_request_limit_exceeded");
    upstream.releaseNext();
    upstream.releaseNext();
    await first.text();
    await waitFor(async () => (await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") })).status === 200, { what: "the slot to be released" });
  });
});

describe("prefetched admissions (docs/limits.md)", () => {
  const logsOf = (t: TestGateway, keyId: string) => {
    const k = t.gateway.redisKeys.limits(keyId);
    const redis = t.gateway.redis!;
    return { requests: () => redis.zcard(k.requests), inflight: () => redis.zcard(k.inflight), reserved: () => redis.hget(k.reserved, "_total") };
  };

  it("a key far from its limits finds its next admission ready; counts and headers stay exact; shutting down gives back what is held", async () => {
    // Held admissions do not age out during this test (a slow machine must not change what it sees).
    const config = pricedConfig(upstream.url);
    config.gatehouse_settings!.limits!.prefetch_max_age_ms = 60_000;
    const own = await startTestGateway({ config });
    let closed = false;
    try {
      const k = await own.newKey({ rpm_limit: 500, max_parallel_requests: 100, max_budget: 1_000_000 });
      const prefetch = own.gateway.limits.prefetch!;
      const remaining: string[] = [];
      for (let i = 0; i < 10; i++) {
        const res = await own.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt", { max_tokens: 5 }) });
        expect(res.status).toBe(200);
        remaining.push(res.headers.get("x-ratelimit-remaining-requests")!);
        await waitFor(() => prefetch.held(k.key_id) === 1, { what: "the next admission to be ready" });
      }
      // Every request but the first was admitted from an admission reserved before it came.
      expect(prefetch.counters.used).toBe(9);
      expect(remaining).toEqual(Array.from({ length: 10 }, (_, i) => String(499 - i)));
      const log = logsOf(own, k.key_id);
      expect(await log.requests()).toBe(11); // ten requests and the one held ready
      expect(await log.inflight()).toBe(1);
      // A replica shutting down gives back what it held: afterwards Redis counts the ten requests only.
      const check = new Redis(REDIS_URL);
      try {
        await own.gateway.close();
        closed = true;
        const keys = own.gateway.redisKeys.limits(k.key_id);
        expect(await check.zcard(keys.requests)).toBe(10);
        expect(await check.zcard(keys.inflight)).toBe(0);
        expect(Number((await check.hget(keys.reserved, "_total")) ?? 0)).toBeCloseTo(0, 9);
      } finally {
        check.disconnect();
      }
    } finally {
      if (closed) await Promise.all([own.db.drop(), own.redis.cleanup()]);
      else await own.close();
    }
  });

  it("an admission nobody uses is given back after prefetch_max_age_ms, as if it never was", async () => {
    const k = await gw.newKey({ rpm_limit: 500, max_budget: 1_000_000 });
    const prefetch = gw.gateway.limits.prefetch!;
    const before = { ...prefetch.counters };
    for (let i = 0; i < 3; i++) expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt", { max_tokens: 5 }) })).status).toBe(200);
    const log = logsOf(gw, k.key_id);
    // Once nothing is held or being fetched for the key, Redis counts the three requests and nothing else.
    await waitFor(async () => prefetch.counters.fetched > before.fetched && prefetch.inProgress(k.key_id) === 0 && (await log.requests()) === 3 && (await log.inflight()) === 0, {
      what: "the held admission to be given back",
    });
    expect(prefetch.counters.cancelled).toBeGreaterThan(before.cancelled);
    expect(Number((await log.reserved()) ?? 0)).toBeCloseTo(0, 9);
  });

  it("an admission held ready under old limits is not used after /key/update lowers them", async () => {
    const k = await gw.newKey({ rpm_limit: 1_000 });
    const prefetch = gw.gateway.limits.prefetch!;
    for (let i = 0; i < 5; i++) expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") })).status).toBe(200);
    await waitFor(() => prefetch.held(k.key_id) === 1, { what: "an admission to be ready" });
    // Five requests made: a limit of five allows no sixth, however much was prefetched under the old one.
    expect((await gw.admin("/key/update", { key: k.key, rpm_limit: 5 })).status).toBe(200);
    const res = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt") });
    expect(res.status).toBe(429);
    expect(openAIError(res.body).code).toBe("rate_limit_exceeded");
    await waitFor(async () => (await logsOf(gw, k.key_id).requests()) === 5, { what: "the stale admission to be given back" });
  });

  it("a request bigger than what was held ready is admitted by its own round trip", async () => {
    const k = await gw.newKey({ tpm_limit: 10_000_000 });
    const prefetch = gw.gateway.limits.prefetch!;
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt", { max_tokens: 10 }) })).status).toBe(200);
    await waitFor(() => prefetch.held(k.key_id) === 1, { what: "an admission to be ready" });
    const usedBefore = prefetch.counters.used;
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("free-gpt", { max_tokens: 100_000 }) })).status).toBe(200);
    expect(prefetch.counters.used).toBe(usedBefore);
  });
});

describe("resets", () => {
  async function exhaust(key: string): Promise<void> {
    await waitFor(async () => (await gw.call("/v1/chat/completions", { key, body: chatBody("priced-gpt", { max_tokens: 5 }) })).status === 400, { what: "the budget to run out" });
  }

  it("POST /key/{key}/reset_spend resets spend cluster-wide; bad input is a 400 and changes nothing", async () => {
    const k = await gw.newKey({ max_budget: 0.005 });
    await exhaust(k.key);
    const bad = await gw.admin(`/key/${k.key}/reset_spend`, { reset_to: -1 });
    expect(bad.status).toBe(400);
    expect(openAIError(bad.body).param).toBe("reset_to");
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") })).status).toBe(400);
    expect((await gw.admin("/key/sk-nope-0000000000/reset_spend", { reset_to: 0 })).status).toBe(404);

    const ok = await gw.admin(`/key/${k.key}/reset_spend`, { reset_to: 0 });
    expect(ok.status).toBe(200);
    expect(ok.body.spend).toBe(0);
    const after = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") });
    expect(after.status).toBe(200);
    // Only what was spent since the reset counts.
    expect((await gw.admin(`/key/info?key=${k.key}`)).body.info.spend).toBe(costOf(after.body.usage));
    expect(await durableSpend(gw, k.token)).toBe(costOf(after.body.usage));
  });

  it("a spend flush that races a reset does not carry the old period's charge into the new one", async () => {
    const k = await gw.newKey({ max_budget: 100 });
    const pool = gw.gateway.pool;
    const { rows } = await pool.query("SELECT spend_generation FROM gh_keys WHERE token = $1", [k.token]);
    gw.gateway.spendLedger.charge({ level: "key", id: k.key_id, ledger: k.key_id }, String(rows[0].spend_generation), 1.5);
    const reset = await pool.connect();
    try {
      await reset.query("BEGIN");
      await reset.query("UPDATE gh_keys SET spend = 0, spend_generation = spend_generation + 1 WHERE key_id = $1", [k.key_id]);
      const flushed = gw.gateway.spendLedger.flush();
      // The flush has read the old generation and now waits for the reset's row lock.
      await waitFor(
        async () =>
          (await pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%gh_spend_batches%'")).rowCount! > 0,
        { what: "the flush to wait on the row lock" },
      );
      await reset.query("COMMIT");
      await flushed;
    } finally {
      reset.release();
    }
    const after = await pool.query("SELECT spend FROM gh_keys WHERE token = $1", [k.token]);
    expect(after.rows[0].spend).toBe(0);
  });

  it("/key/update with spend resets it too, and a new max_budget is enforced at once", async () => {
    const k = await gw.newKey({ max_budget: 0.005 });
    await exhaust(k.key);
    expect((await gw.admin("/key/update", { key: k.key, spend: 0 })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") })).status).toBe(200);
    expect((await gw.admin("/key/update", { key: k.key, max_budget: 0 })).status).toBe(200);
    const refused = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") });
    expect(refused.status).toBe(400);
    expect(openAIError(refused.body).type).toBe("budget_exceeded");
  });

  it("budget_duration: the spend resets when the period ends, and budget_reset_at moves on", async () => {
    const k = await gw.newKey({ max_budget: 0.005, budget_duration: "2s" });
    const firstReset = Date.parse(k.budget_reset_at);
    await exhaust(k.key);
    const back = await waitFor(
      async () => {
        const r = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced-gpt") });
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 6_000, intervalMs: 100, what: "the budget period to reset" },
    );
    expect(back.status).toBe(200);
    expect(Date.now()).toBeGreaterThanOrEqual(firstReset);
    const info = await gw.admin(`/key/info?key=${k.key}`);
    expect(Date.parse(info.body.info.budget_reset_at)).toBeGreaterThan(firstReset);
    expect(info.body.info.spend_generation).toBeGreaterThanOrEqual(1);
  });
});
