// A team with 100,000 keys, every key cached on 3 replicas: block the team and measure commit → applied on every
// replica, that every key then refuses, and the CPU each replica spent applying the one event (no per-key work:
// each replica's /debug/coherence reports how long applying each event took).
// Keys are inserted with SQL (their plaintexts are known), then warmed through GET /v1/models on each replica.
import pg from "pg";
import { Pool } from "undici";
import { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, startReplica, writeResult } from "./lib/harness.mjs";

const KEYS = Number(process.env.BENCH_TEAM_KEYS ?? 100_000);
const CHANGES = Number(process.env.BENCH_TEAM_CHANGES ?? 40);
const SAMPLE = Number(process.env.BENCH_TEAM_SAMPLE ?? 2_000);
const MASTER = "sk-bench-master-key";
const progress = (msg) => process.stderr.write(`[teams] ${msg}\n`);
const plaintext = (i) => `sk-bench-team-key-${String(i).padStart(8, "0")}-0123456789abcdef`;

const db = await createDatabase();
const ns = redisNamespace();
const sql = new pg.Pool({ connectionString: db.url, max: 2 });
const replicas = [];
const env = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: MASTER, GATEHOUSE_AUTH_L1_MAX_ENTRIES: String(KEYS * 2) };

const admin = async (r, path, body) => {
  const res = await fetch(`${r.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), eventIds: (res.headers.get("gatehouse-event-id") ?? "").split(",").filter(Boolean).map(Number) };
};

/** Each of `count` keys, through `pool`, `concurrency` at a time; answers the statuses seen. */
async function callKeys(pool, indexes, concurrency) {
  const statuses = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < indexes.length) {
        const i = indexes[next++];
        const res = await pool.request({ method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${plaintext(i)}` } });
        const body = await res.body.json();
        const key = `${res.statusCode} ${body?.error?.code ?? ""}`.trim();
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
    }),
  );
  return statuses;
}

try {
  // The schema and the team first (one replica migrates), then the keys, then the other replicas.
  replicas.push(await startReplica({ ...env, GATEHOUSE_REPLICA_ID: "A" }));
  const team = await admin(replicas[0], "/team/new", { team_id: "big-team" });
  if (team.status !== 200) throw new Error(`team: ${team.status}`);
  progress(`inserting ${KEYS} keys`);
  await sql.query(
    `INSERT INTO gh_keys (token, key_name, team_id)
     SELECT encode(sha256(convert_to('sk-bench-team-key-' || lpad(g::text, 8, '0') || '-0123456789abcdef', 'UTF8')), 'hex'), 'sk-...cdef', 'big-team'
     FROM generate_series(0, $1 - 1) g`,
    [KEYS],
  );
  // Restarted so every replica's token filter knows the keys (they were written behind its back).
  await replicas[0].stop();
  replicas.length = 0;
  for (const name of ["A", "B", "C"]) replicas.push(await startReplica({ ...env, GATEHOUSE_REPLICA_ID: name }));
  const pools = replicas.map((r) => new Pool(r.url, { connections: 16, pipelining: 1 }));
  const all = Array.from({ length: KEYS }, (_, i) => i);
  for (const [n, pool] of pools.entries()) {
    const t0 = performance.now();
    const seen = await callKeys(pool, all, 32);
    progress(`warmed ${replicas[n].replicaId ?? n}: ${JSON.stringify(seen)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const sample = Array.from({ length: SAMPLE }, () => Math.floor(Math.random() * KEYS));

  const lags = [];
  const applyUs = [];
  let refusedAll = true;
  /** Waits until every replica applied `eventId`; answers each replica's entry for it (lag, CPU spent applying). */
  const appliedEverywhere = async (eventId) => {
    const entries = [];
    for (const r of replicas) {
      for (;;) {
        const mine = (await admin(r, `/debug/coherence?after_event_id=${eventId - 1}`)).body.applied?.find((a) => a.id === eventId);
        if (mine) {
          entries.push(mine);
          break;
        }
        await new Promise((res) => setTimeout(res, 2));
      }
    }
    return entries;
  };
  for (let c = 0; c < CHANGES; c++) {
    const blocking = c % 2 === 0;
    const change = await admin(replicas[c % 3], blocking ? "/team/block" : "/team/unblock", { team_id: "big-team" });
    for (const e of await appliedEverywhere(change.eventIds[0])) {
      lags.push(e.lagMs);
      applyUs.push(e.applyUs);
    }
    if (c === 0) {
      // Right after the block: every sampled key refuses on every replica, as team_blocked.
      for (const pool of pools) {
        const seen = await callKeys(pool, sample, 32);
        progress(`after the block: ${JSON.stringify(seen)}`);
        if (seen["401 team_blocked"] !== SAMPLE) refusedAll = false;
      }
    }
  }
  // For scale: applying one key's own change (a key outside the team, blocked and unblocked).
  const single = await admin(replicas[0], "/key/generate", {});
  const keyApplyUs = [];
  for (let c = 0; c < 10; c++) {
    const change = await admin(replicas[c % 3], c % 2 === 0 ? "/key/block" : "/key/unblock", { key: single.body.key });
    keyApplyUs.push(...(await appliedEverywhere(change.eventIds[0])).map((e) => e.applyUs));
  }
  const sorted = [...lags].sort((a, b) => a - b);
  const us = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${percentile(s, 50).toFixed(0)} / ${percentile(s, 99).toFixed(0)} µs`;
  };
  const rows = [
    { what: `team changes (block / unblock), ${KEYS.toLocaleString("en")} keys cached on each of 3 replicas`, value: `${CHANGES} changes, ${lags.length} applications` },
    {
      what: "commit → applied on every replica: p50 / p99 / max",
      value: `${percentile(sorted, 50).toFixed(1)} / ${percentile(sorted, 99).toFixed(1)} / ${sorted.at(-1).toFixed(1)} ms (target p99 ≤ 20 ms)`,
    },
    { what: "CPU applying one team event on a replica: p50 / p99", value: `${us(applyUs)} (one record evicted, whatever the team's size)` },
    { what: "CPU applying one key's event on a replica, for scale: p50 / p99", value: us(keyApplyUs) },
    { what: `sampled keys (${SAMPLE} per replica) refused as team_blocked right after the block`, value: refusedAll ? "all" : "NOT all" },
  ];
  const table = printTable(`A team of ${KEYS.toLocaleString("en")} keys, blocked and unblocked (3 replicas, every key cached on each)`, rows);
  writeResult("teams", { keys: KEYS, changes: CHANGES, lagsMs: lags, applyUs, keyApplyUs, refusedAll, markdown: table });
  await Promise.all(pools.map((p) => p.close()));
  if (!refusedAll) process.exitCode = 1;
} finally {
  await Promise.all(replicas.map((r) => r.stop()));
  await sql.end();
  await db.drop();
  await ns.cleanup();
}
