import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { DependencyBreaker, POSTGRES_BREAKER_OPTIONS } from "../src/faults/breaker.js";
import { createLogger, type Logger } from "../src/logger.js";
import { SpendJournal } from "../src/spendlogs/spend-journal.js";
import { SpendLogWriter } from "../src/spendlogs/spend-log-writer.js";
import { Database } from "../src/store/database.js";
import { createPool } from "../src/store/db.js";
import type { SpendLogRow } from "../src/store/spend-log-row.js";
import { copySpendLogs, insertSpendLogs } from "../src/store/spend-log-store.js";
import { LogCapture } from "./helpers/gateway-fixture.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";
import { INPUT_COST, OUTPUT_COST, pricedModel } from "./helpers/prices.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { AWKWARD_FIELDS, spendLogRow } from "./helpers/spend-rows.js";

/**
 * Spend logs on real replica processes: one row per request (served or refused by a limit), written off the
 * request path, idempotent by request id, read back through LiteLLM's /spend/logs and /global/spend/report; and a
 * Postgres outage (and a graceful restart during one) under load loses no row. Prices are powers of two.
 */
const config: ConfigFile = {
  model_list: [pricedModel("priced"), { model_name: "free", litellm_params: { model: "mock/free" } }],
  gatehouse_settings: { spend_logs: { flush_interval_ms: 100 } },
};

/** `work` inside a transaction on one connection of the cluster's pool: committed if it resolves, rolled back if not. */
async function inTransaction<T>(cluster: Cluster, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const tx = await cluster.pool.connect();
  try {
    await tx.query("BEGIN");
    const result = await work(tx);
    await tx.query("COMMIT");
    return result;
  } catch (err) {
    await tx.query("ROLLBACK");
    throw err;
  } finally {
    tx.release();
  }
}

async function rowCount(cluster: Cluster, where = "TRUE", params: unknown[] = []): Promise<number> {
  const { rows } = await cluster.pool.query(`SELECT count(*)::int AS n FROM gh_spend_logs WHERE ${where}`, params);
  return rows[0].n;
}

/** A writer (by COPY) on `pool`, as the gateway makes one, with batches of `batchRows`. */
function writerOn(pool: pg.Pool, journal: SpendJournal, logger: Logger, batchRows: number): SpendLogWriter {
  const db = new Database(pool, new DependencyBreaker("postgres", logger, POSTGRES_BREAKER_OPTIONS));
  return new SpendLogWriter({ db, journal, logger, batchRows, memoryMaxRows: 1_000, copy: true });
}

describe("spend logs on two replicas", () => {
  let cluster: Cluster;
  let A: Replica, B: Replica;
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    const gated = {
      model_name: "gated",
      litellm_params: { model: "openai/stream-gated", api_base: `${upstream.url}/v1`, input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST },
    };
    cluster = await startCluster({ size: 2, config: { ...config, model_list: [...config.model_list!, gated] } });
    [A, B] = cluster.replicas as [Replica, Replica];
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    await upstream?.close();
  });

  it("a client that leaves mid-stream leaves a row with what it was charged (its reservation: no usage came)", async () => {
    const key = await generateKey(A, {});
    const abort = new AbortController();
    const res = await fetch(`${A.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("gated", { stream: true, max_tokens: 8 })),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read(); // the first chunk
    abort.abort();
    await waitFor(async () => (await rowCount(cluster, "key_id = $1", [key.key_id])) === 1, { what: "the row of the abandoned stream" });
    const [row] = (await A.admin(`/spend/logs?key_id=${key.key_id}`)).body;
    expect(row).toMatchObject({ status_code: 200, error_code: "client_gone", stream: true, model: "gated" });
    expect(row.spend).toBeGreaterThan(8 * OUTPUT_COST - 1e-12);
    // The row says what the key was charged.
    await waitFor(async () => (await cluster.pool.query("SELECT spend FROM gh_keys WHERE key_id = $1", [key.key_id])).rows[0].spend === row.spend, {
      what: "the key's durable spend to equal the row's",
    });
  });

  it("writes one row per request with its key, team, user, model, tokens, spend, status, tags and replica; LiteLLM's query shapes read them", async () => {
    const team = (await A.admin("/team/new", { team_id: `team-logs-${process.pid}` })).body;
    const teamKey = await generateKey(A, { team_id: team.team_id, key_alias: "logged" });
    const userKey = await generateKey(B, { user_id: `user-logs-${process.pid}` });
    const limited = await generateKey(A, { rpm_limit: 1 });
    await cluster.settle();

    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await api([A, B][i % 2]!.url, "/v1/chat/completions", {
        key: [teamKey, userKey][i % 2]!.key,
        body: chatBody("priced", { max_tokens: 1, metadata: { tags: ["batch", `n${i}`], purpose: "test" } }),
      });
      expect(res.status).toBe(200);
      ids.push(res.headers.get("x-request-id")!);
    }
    const clientId = `client-request-${process.pid}`;
    const named = await api(A.url, "/v1/chat/completions", { key: teamKey.key, body: chatBody("free"), headers: { "x-request-id": clientId } });
    expect(named.status).toBe(200);
    expect((await api(B.url, "/v1/chat/completions", { key: limited.key, body: chatBody("free") })).status).toBe(200);
    const refused = await api(B.url, "/v1/chat/completions", { key: limited.key, body: chatBody("free") });
    expect(refused.status).toBe(429);

    await waitFor(async () => (await rowCount(cluster, "key_id = ANY($1)", [[teamKey.key_id, userKey.key_id, limited.key_id]])) === 13, {
      what: "13 rows for 13 requests",
    });
    // Exactly one row per request id the clients saw.
    expect(await rowCount(cluster, "request_id::text = ANY($1)", [ids])).toBe(10);

    const page = await A.admin(`/spend/logs?api_key=${teamKey.key}`);
    expect(page.status).toBe(200);
    expect(page.body).toHaveLength(6); // 5 priced + 1 free, newest first
    const row = page.body.find((r: { request_id: string }) => r.request_id === ids[0]);
    expect(row).toMatchObject({
      api_key: teamKey.token,
      key_id: teamKey.key_id,
      key_alias: "logged",
      team_id: team.team_id,
      model: "priced",
      upstream_model: "mock/priced",
      status: "success",
      status_code: 200,
      stream: false,
      request_tags: ["batch", "n0"],
      metadata: { purpose: "test" },
      replica_id: A.replicaId,
    });
    expect(row.spend).toBe(row.prompt_tokens * INPUT_COST + row.completion_tokens * OUTPUT_COST);
    expect(row.total_tokens).toBe(row.prompt_tokens + row.completion_tokens);
    expect(row.latency_ms).toBeGreaterThan(0);
    expect(row.overhead_ms).toBeLessThanOrEqual(row.latency_ms);
    // The key's hash works as the filter too, and so do user, team, request id (ours or the client's) and dates.
    expect((await B.admin(`/spend/logs?api_key=${teamKey.token}`)).body).toHaveLength(6);
    expect((await B.admin(`/spend/logs?user_id=user-logs-${process.pid}`)).body).toHaveLength(5);
    expect((await B.admin(`/spend/logs?team_id=${team.team_id}&page_size=4`)).body).toHaveLength(4);
    expect((await B.admin(`/spend/logs?team_id=${team.team_id}&page_size=4&page=2`)).body).toHaveLength(2);
    expect((await B.admin(`/spend/logs?request_id=${clientId}`)).body.map((r: { model: string }) => r.model)).toEqual(["free"]);
    // That row's own id (made by Gatehouse from the request's start, as every row's) finds it too; a request id that
    // is no UUID finds nothing.
    const namedRow = (await B.admin(`/spend/logs?request_id=${clientId}`)).body[0];
    expect((await A.admin(`/spend/logs?request_id=${namedRow.request_id}`)).body.map((r: { model: string }) => r.model)).toEqual(["free"]);
    expect((await A.admin("/spend/logs?request_id=not-a-request")).body).toEqual([]);
    const today = new Date().toISOString().slice(0, 10);
    expect((await B.admin(`/spend/logs?api_key=${teamKey.key}&start_date=${today}&end_date=${today}`)).body).toHaveLength(6);
    expect((await B.admin(`/spend/logs?api_key=${teamKey.key}&end_date=2020-01-01`)).body).toHaveLength(0);
    const limitedRows = (await B.admin(`/spend/logs?key_id=${limited.key_id}`)).body;
    expect(limitedRows.map((r: { status_code: number; error_code: string | null }) => [r.status_code, r.error_code])).toEqual([
      [429, "rate_limit_exceeded"],
      [200, null],
    ]);
    // Text Postgres cannot store (NUL, a lone surrogate) in the client's metadata is left out, and the row still lands.
    const odd = await api(A.url, "/v1/chat/completions", { key: teamKey.key, body: chatBody("free", { metadata: { tags: ["ok", "bad\ud800"], note: "nul\u0000" } }) });
    expect(odd.status).toBe(200);
    const oddId = odd.headers.get("x-request-id")!;
    await waitFor(async () => (await B.admin(`/spend/logs?request_id=${oddId}`)).body.length === 1, { what: "the row with odd metadata" });
    expect((await B.admin(`/spend/logs?request_id=${oddId}`)).body[0]).toMatchObject({ request_tags: ["ok"], metadata: { unstorable: true } });
    // Bad input: a 400 naming the field, never a 500.
    const bad = await B.admin("/spend/logs?start_date=yesterday");
    expect(bad.status).toBe(400);
    expect(openAIError(bad.body).param).toBe("start_date");
    expect((await B.admin("/spend/logs?nonsense=1")).status).toBe(400);
    // A virtual key is not an admin.
    expect((await api(A.url, "/spend/logs", { key: teamKey.key })).status).toBe(403);
  });

  it("/global/spend/report adds up the daily totals by team, key, user and model", async () => {
    const today = new Date().toISOString().slice(0, 10);
    const { rows } = await cluster.pool.query("SELECT COALESCE(team_id, '') AS team, sum(spend) AS spend, count(*)::int AS n FROM gh_spend_logs GROUP BY 1");
    const report = await A.admin(`/global/spend/report?start_date=${today}&end_date=${today}&group_by=team`);
    expect(report.status).toBe(200);
    expect(report.body).toHaveLength(1);
    expect(report.body[0].group_by_day).toBe(today);
    for (const r of rows) {
      const group = report.body[0].teams.find((t: { name: string | null }) => (t.name ?? "") === r.team);
      expect(group.total_spend).toBe(r.spend);
      expect(group.total_requests).toBe(r.n);
    }
    const byModel = (await B.admin(`/global/spend/report?start_date=${today}&end_date=${today}&group_by=model`)).body[0].models;
    expect(byModel.map((m: { name: string }) => m.name).sort()).toEqual(["free", "gated", "priced"]);
    expect((await B.admin(`/global/spend/report?start_date=${today}&end_date=2020-01-01`)).status).toBe(400);
    expect((await B.admin(`/global/spend/report?start_date=${today}`)).status).toBe(400);
  });

  it("a batch written twice (its answer lost, retried) adds no row and no total twice", async () => {
    const { rows } = await cluster.pool.query("SELECT * FROM gh_spend_logs ORDER BY start_time LIMIT 3");
    const before = await cluster.pool.query("SELECT sum(requests)::int AS n, sum(spend) AS spend FROM gh_spend_daily");
    const again = rows.map((r) => ({ ...r, start_time: r.start_time.toISOString(), end_time: r.end_time.toISOString() }));
    expect(await insertSpendLogs(cluster.pool, again)).toBe(0);
    const after = await cluster.pool.query("SELECT sum(requests)::int AS n, sum(spend) AS spend FROM gh_spend_daily");
    expect(after.rows[0]).toEqual(before.rows[0]);

    // Written as a new batch (the writer's first try), a batch holding a row already there is refused whole: the
    // new row beside it is not written either, and no total moves; written again skipping repeats, only it is.
    const fresh = { ...again[0], request_id: randomUUID(), spend: 0.5 };
    const refused = await insertSpendLogs(cluster.pool, [fresh, ...again], false).then(
      () => null,
      (err: { code?: string }) => err.code,
    );
    expect(refused).toBe("23505");
    expect((await cluster.pool.query("SELECT count(*)::int AS n FROM gh_spend_logs WHERE request_id = $1", [fresh.request_id])).rows[0].n).toBe(0);
    expect((await cluster.pool.query("SELECT sum(requests)::int AS n, sum(spend) AS spend FROM gh_spend_daily")).rows[0]).toEqual(before.rows[0]);
    // So is a COPY of it (a new batch's way in on a Postgres server), and the connection stays usable.
    const copied = await inTransaction(cluster, (tx) => copySpendLogs(tx, [{ ...fresh, request_id: randomUUID() }, ...again])).then(
      () => null,
      (err: { code?: string }) => err.code,
    );
    expect(copied).toBe("23505");
    expect((await cluster.pool.query("SELECT sum(requests)::int AS n, sum(spend) AS spend FROM gh_spend_daily")).rows[0]).toEqual(before.rows[0]);
    expect(await insertSpendLogs(cluster.pool, [fresh, ...again], true)).toBe(1);
    expect((await cluster.pool.query("SELECT sum(requests)::int AS n FROM gh_spend_daily")).rows[0].n).toBe(before.rows[0].n + 1);
  });

  it("COPY stores every column as the JSON batch does, and adds the same daily totals", async () => {
    const model = `copy-${randomUUID()}`;
    const start = Date.UTC(2031, 4, 6, 23, 59, 59, 123); // the second row is on the next day
    const rows: SpendLogRow[] = [
      spendLogRow(model, start, { ...AWKWARD_FIELDS, end_time: start + 1234, key_id: randomUUID() }),
      spendLogRow(model, start + 1000, {
        end_time: start + 1001,
        upstream_model: null,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        spend: 0,
        latency_ms: 0.001,
        overhead_ms: 0.5,
        replica_id: "r",
      }),
    ];
    const copied = rows.map((r) => ({ ...r, request_id: randomUUID() }));
    const inserted = rows.map((r) => ({ ...r, request_id: randomUUID(), model: `${model}-json` }));
    expect(await inTransaction(cluster, (tx) => copySpendLogs(tx, copied))).toBe(2);
    expect(await insertSpendLogs(cluster.pool, inserted, false)).toBe(2);
    const read = async (m: string) =>
      (await cluster.pool.query("SELECT * FROM gh_spend_logs WHERE model = $1 ORDER BY start_time", [m])).rows.map(({ request_id, model: _, ...rest }) => ({
        request_id,
        rest,
      }));
    const viaCopy = await read(model);
    const viaJson = await read(`${model}-json`);
    expect(viaCopy.map((r) => r.request_id)).toEqual(copied.map((r) => r.request_id));
    expect(viaCopy.map((r) => r.rest)).toEqual(viaJson.map((r) => r.rest));
    expect(viaCopy[0]!.rest).toMatchObject({
      start_time: new Date(start),
      end_time: new Date(start + 1234),
      client_request_id: rows[0]!.client_request_id,
      key_alias: "alias é ✓",
      team_id: "team\\1",
      prompt_tokens: 2_000_000_000,
      total_tokens: 2_000_000_007,
      spend: 0.1 + 0.2,
      overhead_ms: null,
      status: 502,
      stream: true,
      tags: rows[0]!.tags,
      metadata: rows[0]!.metadata,
    });
    const daily = async (m: string) =>
      (
        await cluster.pool.query(
          "SELECT to_char(day, 'YYYY-MM-DD') AS day, key_hash, team_id, user_id, requests::int, failed_requests::int, prompt_tokens::float8, completion_tokens::float8, spend FROM gh_spend_daily WHERE model = $1 ORDER BY day",
          [m],
        )
      ).rows;
    expect(await daily(model)).toEqual(await daily(`${model}-json`));
    // Random (version 4) request ids, as rows written before ids carried their time have: found by request id too.
    for (const r of [copied[0]!, inserted[1]!])
      expect((await A.admin(`/spend/logs?request_id=${r.request_id}`)).body.map((x: { request_id: string }) => x.request_id)).toEqual([r.request_id]);
    expect((await daily(model)).map((d) => [d.day, d.requests, d.failed_requests])).toEqual([
      ["2031-05-06", 1, 1],
      ["2031-05-07", 1, 0],
    ]);
    // A value that is not one is refused before anything is sent, as Postgres would refuse it (data errors, class 22).
    for (const bad of [{ request_id: "not-a-uuid" }, { start_time: "not a time" }, { prompt_tokens: 1.5 }, { prompt_tokens: 2 ** 31 }, { spend: Number.NaN }]) {
      const refused = await inTransaction(cluster, (tx) => copySpendLogs(tx, [{ ...copied[1]!, request_id: randomUUID(), ...bad }])).then(
        () => null,
        (err: { code?: string }) => err.code,
      );
      expect(refused).toMatch(/^22/);
    }
  });

  it("the writer: a batch whose first write committed unseen is written again without repeats; a row with a bad time is set aside alone", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "gatehouse-writer-"));
    const pool = createPool(cluster.db.url, { max: 2 });
    const logger = createLogger({ destination: new LogCapture(), level: "warn" });
    const journal = new SpendJournal(dir);
    await journal.open();
    const writer = writerOn(pool, journal, logger, 100);
    const model = `writer-${randomUUID()}`;
    const row = (start: number | string) => spendLogRow(model, start);
    const daily = async () => (await cluster.pool.query("SELECT coalesce(sum(requests), 0)::int AS n FROM gh_spend_daily WHERE model = $1", [model])).rows[0].n;
    const logged = async () => (await cluster.pool.query("SELECT count(*)::int AS n FROM gh_spend_logs WHERE model = $1", [model])).rows[0].n;
    try {
      const rows = [row(Date.now()), row(Date.now()), row(Date.now())];
      // The first of them was written once already: a write whose answer was lost.
      expect(await insertSpendLogs(pool, [rows[0]!], false)).toBe(1);
      for (const r of rows) writer.record(r);
      await writer.flush();
      expect(writer.counters).toMatchObject({ written: 3, flushFailures: 0, dropped: 0, journaled: 0 });
      expect(await logged()).toBe(3);
      expect(await daily()).toBe(3);

      // A flush writes the rows queued when it began; rows that arrive meanwhile wait for the next one (a busy
      // replica's flush would otherwise never end, writing ever smaller batches).
      writer.record(row(Date.now()));
      const flushing = writer.flush();
      writer.record(row(Date.now()));
      await flushing;
      expect(writer.queued).toBe(1);
      expect(await logged()).toBe(4);
      await writer.flush();
      expect(writer.queued).toBe(0);
      expect(await logged()).toBe(5);
      expect(await daily()).toBe(5);

      writer.record(row("not a time"));
      writer.record(row(Date.now()));
      await writer.flush();
      expect(writer.counters).toMatchObject({ dropped: 1, flushFailures: 0, journaled: 0 });
      expect(await logged()).toBe(6);
      expect(await daily()).toBe(6);
    } finally {
      await pool.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the writer: rows that neither Postgres nor the journal (disk full) takes stay in memory, and so do rows recorded after; all are written once Postgres returns", async () => {
    const proxy = await startTcpProxy("127.0.0.1", 5432);
    const pool = createPool(viaProxy(cluster.db.url, proxy), { max: 2 });
    const logger = createLogger({ destination: new LogCapture(), level: "fatal" });
    // A journal whose directory does not exist: every append fails, as on a full disk.
    const journal = new SpendJournal(path.join(tmpdir(), `gatehouse-no-such-dir-${randomUUID()}`));
    const writer = writerOn(pool, journal, logger, 2);
    const model = `stuck-${randomUUID()}`;
    const logged = async () => (await cluster.pool.query("SELECT count(*)::int AS n FROM gh_spend_logs WHERE model = $1", [model])).rows[0].n;
    try {
      proxy.setMode("reject");
      proxy.cutAll();
      for (let i = 0; i < 3; i++) writer.record(spendLogRow(model, Date.now()));
      const flushing = writer.flush();
      // Recorded while the flush waits on Postgres: a batch being filled when the flush fails.
      writer.record(spendLogRow(model, Date.now()));
      await flushing;
      expect(writer.counters).toMatchObject({ flushFailures: 1, journaled: 0, dropped: 0 });
      expect(writer.queued).toBe(4);
      // That batch's rows were read back for the journal, which ended it: the next row starts another batch.
      writer.record(spendLogRow(model, Date.now()));
      expect(writer.counters.dropped).toBe(0);
      expect(writer.queued).toBe(5);
      proxy.setMode("pass");
      await waitFor(
        async () => {
          await writer.flush();
          return writer.queued === 0;
        },
        { timeoutMs: 15_000, intervalMs: 250, what: "the queued rows written once Postgres answers" },
      );
      expect(await logged()).toBe(5);
      expect(writer.counters).toMatchObject({ written: 5, dropped: 0, journaled: 0 });
    } finally {
      await pool.end();
      await proxy.close();
    }
  });
});

describe("a Postgres outage under load loses no spend log row", () => {
  let cluster: Cluster;
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = await startTcpProxy("127.0.0.1", 5432);
    cluster = await startCluster({ size: 1, config, databaseUrl: (url) => viaProxy(url, proxy), listenDirect: true });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    await proxy?.close();
  });

  /** The load's pace: a pause between one answer and the next request (the scenario's traffic, not a wait). */
  const PACE_MS = 5;

  /** Sends requests one after another until `stop()`; returns the request ids of the answers that were 200. */
  function load(replica: () => Replica, key: string) {
    const served: string[] = [];
    let running = true;
    const done = (async () => {
      while (running) {
        const res = await api(replica().url, "/v1/chat/completions", { key, body: chatBody("free") }).catch(() => null);
        if (res?.status === 200) served.push(res.headers.get("x-request-id")!);
        await new Promise((r) => setTimeout(r, PACE_MS));
      }
    })();
    return {
      served,
      stop: async () => {
        running = false;
        await done;
      },
    };
  }

  it("rows of requests served while Postgres was unreachable reach it when it returns: exactly one per request", async () => {
    const A = cluster.replicas[0]!;
    const key = await generateKey(A, {});
    expect(await A.chat(key.key, "free")).toBe(200); // cached: served from memory while Postgres is gone
    const traffic = load(() => A, key.key);
    await waitFor(async () => traffic.served.length >= 20, { what: "traffic before the outage" });
    proxy.setMode("reject");
    proxy.cutAll();
    const atOutage = traffic.served.length;
    await waitFor(async () => traffic.served.length >= atOutage + 100, { timeoutMs: 15_000, what: "requests served during the outage" });
    // The outage lasts until a flush has failed and its rows went to the journal (then replayed once Postgres is back).
    await waitFor(async () => /gatehouse_spend_log_rows_total\{outcome="journaled"\} [1-9]/.test((await A.admin("/metrics")).body as string), {
      timeoutMs: 15_000,
      intervalMs: 100,
      what: "rows journaled while Postgres is unreachable",
    });
    proxy.setMode("pass");
    await waitFor(async () => traffic.served.length >= atOutage + 200, { timeoutMs: 15_000, what: "traffic after the outage" });
    await traffic.stop();

    const ids = traffic.served;
    await waitFor(async () => (await rowCount(cluster, "request_id::text = ANY($1)", [ids])) === ids.length, {
      timeoutMs: 15_000,
      what: `a row for each of the ${ids.length} requests served`,
    });
    expect(await rowCount(cluster, "key_id = $1", [key.key_id])).toBe(ids.length + 1);
    const metrics = (await A.admin("/metrics")).body as string;
    expect(metrics).toMatch(/gatehouse_spend_log_rows_total\{outcome="journaled"\} [1-9]/);
    expect(metrics).toMatch(/gatehouse_spend_log_rows_total\{outcome="replayed"\} [1-9]/);
    expect(metrics).not.toMatch(/gatehouse_spend_log_rows_total\{outcome="dropped"\} [1-9]/);
  }, 90_000);

  it("a graceful restart while Postgres is unreachable keeps the rows in the journal; the next start writes them", async () => {
    const A = cluster.replicas[0]!;
    const key = await generateKey(A, {});
    expect(await A.chat(key.key, "free")).toBe(200);
    proxy.setMode("reject");
    proxy.cutAll();
    const served: string[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await api(A.url, "/v1/chat/completions", { key: key.key, body: chatBody("free") });
      expect(res.status).toBe(200);
      served.push(res.headers.get("x-request-id")!);
    }
    await A.stop("SIGTERM");
    cluster.replicas.splice(cluster.replicas.indexOf(A), 1);
    proxy.setMode("pass");
    const again = await cluster.addReplica("A2");
    await waitFor(async () => (await rowCount(cluster, "request_id::text = ANY($1)", [served])) === served.length, {
      timeoutMs: 15_000,
      what: "the journal of the stopped replica to be written by the new one",
    });
    expect(await rowCount(cluster, "key_id = $1", [key.key_id])).toBe(served.length + 1);
    // The line is logged after the rows are in and the file is removed, and written asynchronously: wait for it.
    await waitFor(() => again.output.some((line) => line.includes("spend log journal replayed into Postgres")), {
      timeoutMs: 5_000,
      what: "the new replica to say it replayed the journal",
    });
  }, 90_000);
});
