// Commit → eviction on every replica, with notifications flowing and with notifications lost, and
// regenerations per second with 3 replicas (spread over many keys, and all contending for one key).
// Lags come from each replica's /debug/coherence: applied-at (replica clock) minus the event row's
// clock_timestamp() written just before COMMIT (database clock); both clocks are this machine's.
import { startTcpProxy, viaProxy } from "../test/support/tcp-proxy.mjs";
import { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, startReplica, writeResult } from "./lib/harness.mjs";

const CHANGES = Number(process.env.BENCH_CHANGES ?? 1000);
const LOST_CHANGES = Number(process.env.BENCH_LOST_CHANGES ?? 300);
const ROTATIONS = Number(process.env.BENCH_ROTATIONS ?? 1500);
const CONTENTION_SECONDS = Number(process.env.BENCH_CONTENTION_SECONDS ?? 5);
const MASTER = "sk-bench-master-key";

const db = await createDatabase();
const ns = redisNamespace();
const baseEnv = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: MASTER };
const replicas = [];
const start = async (name, extra = {}) => {
  const r = await startReplica({ ...baseEnv, GATEHOUSE_REPLICA_ID: name, ...extra });
  r.name = name;
  replicas.push(r);
  progress(`started ${name} pid ${r.child.pid} ${r.url}`);
  return r;
};
const call = async (replica, path, body) => {
  const res = await fetch(`${replica.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.json() };
};
const maxEventId = async (r) => (await call(r, "/debug/coherence")).body.last_applied_event_id;

async function runPool(count, concurrency, task) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** Waits until every replica in `group` applied events up to `lastId`, then returns their lags. */
async function lagsFor(group, afterId, lastId) {
  const deadline = Date.now() + 10_000;
  for (const r of group)
    while ((await maxEventId(r)) < lastId) {
      if (Date.now() > deadline) throw new Error(`${r.name} did not catch up`);
      await new Promise((res) => setTimeout(res, 50));
    }
  const perReplica = {};
  for (const r of group) perReplica[r.name] = (await call(r, `/debug/coherence?after_event_id=${afterId}`)).body.applied.filter((a) => a.id <= lastId).map((a) => a.lagMs);
  return perReplica;
}

const stats = (what, lags) => {
  const s = [...lags].sort((a, b) => a - b);
  return { what, events: s.length, "p50 ms": percentile(s, 50).toFixed(1), "p99 ms": percentile(s, 99).toFixed(1), "max ms": s.at(-1).toFixed(1) };
};

const rows = [];
const progress = (msg) => process.stderr.write(`[propagation] ${msg}\n`);
try {
  const [A, B, C] = [await start("A"), await start("B"), await start("C")];
  const group = [A, B, C];

  progress("replicas up; 1. notifications flowing");
  // 1. Notifications flowing: changes made on every replica in turn.
  const keys = [];
  for (let i = 0; i < 50; i++) keys.push((await call(A, "/key/generate", {})).body.key);
  const before = Math.max(...(await Promise.all(group.map(maxEventId))));
  await runPool(CHANGES, 4, async (i) => {
    const res = await call(group[i % 3], "/key/update", { key: keys[i % keys.length], metadata: { i } });
    if (res.status !== 200) throw new Error(`update failed: ${res.status}`);
  });
  const after = (await call(A, "/debug/coherence")).body.last_applied_event_id;
  const flowing = await lagsFor(group, before, after);
  for (const [name, lags] of Object.entries(flowing)) rows.push(stats(`notifications flowing: replica ${name}`, lags));
  rows.push(stats("notifications flowing: all replicas", Object.values(flowing).flat()));

  progress("2. notifications lost");
  // 2. Notifications lost: B and C listen through a proxy that then drops everything silently.
  await Promise.all([B, C].map((r) => r.stop("SIGTERM")));
  replicas.splice(1, 2);
  const pgUrl = new URL(db.url);
  const proxy = await startTcpProxy(pgUrl.hostname, Number(pgUrl.port || 5432));
  const listenUrl = viaProxy(db.url, proxy);
  const [B2, C2] = [await start("B-lost", { DATABASE_LISTEN_URL: listenUrl }), await start("C-lost", { DATABASE_LISTEN_URL: listenUrl })];
  proxy.setMode("blackhole");
  const lostBefore = await maxEventId(A);
  // Spread over a few heartbeats, so changes land at every phase of the 1 s heartbeat.
  await runPool(LOST_CHANGES, 1, async (i) => {
    await call(A, "/key/update", { key: keys[i % keys.length], metadata: { lost: i } });
    await new Promise((res) => setTimeout(res, 10));
  });
  const lostAfter = await maxEventId(A);
  progress(`changes made (${lostBefore}..${lostAfter}); waiting for B, C`);
  const lost = await lagsFor([B2, C2], lostBefore, lostAfter);
  rows.push(stats("notifications lost (blackholed LISTEN): B, C", Object.values(lost).flat()));
  proxy.setMode("pass");
  proxy.cutAll();
  await Promise.all([B2, C2].map((r) => r.stop("SIGTERM")));
  replicas.splice(1, 2);
  await proxy.close();
  progress("restarting B, C");
  const [B3, C3] = [await start("B"), await start("C")];
  progress("3. regenerations");
  const trio = [A, B3, C3];

  // 3. Regenerations per second, 3 replicas, each rotation on its own key.
  const rotKeys = [];
  await runPool(ROTATIONS, 16, async (i) => {
    rotKeys[i] = (await call(trio[i % 3], "/key/generate", {})).body.key;
  });
  // Warm-up: B and C were just restarted; time the steady state, not the JIT compiling the rotation path.
  const warmKeys = [];
  await runPool(300, 16, async (i) => {
    warmKeys[i] = (await call(trio[i % 3], "/key/generate", {})).body.key;
  });
  await runPool(300, 24, async (i) => {
    await call(trio[i % 3], `/key/${warmKeys[i]}/regenerate`, { grace_period: "1h" });
  });
  let failures = 0;
  let t0 = performance.now();
  await runPool(ROTATIONS, 24, async (i) => {
    const res = await call(trio[i % 3], `/key/${rotKeys[i]}/regenerate`, { grace_period: "1h" });
    if (res.status !== 200) failures++;
  });
  let seconds = (performance.now() - t0) / 1000;
  const spread = {
    what: "regenerations, 3 replicas, distinct keys",
    rotations: ROTATIONS - failures,
    failures,
    seconds: seconds.toFixed(2),
    "per second": Math.round((ROTATIONS - failures) / seconds),
  };

  progress("4. contention");
  // 4. All replicas contending for one key: each worker regenerates whatever key is active now.
  let current = (await call(A, "/key/generate", {})).body.key;
  let won = 0;
  let conflicts = 0;
  let errors = 0;
  t0 = performance.now();
  const until = Date.now() + CONTENTION_SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 24 }, async (_, w) => {
      while (Date.now() < until) {
        const res = await call(trio[w % 3], `/key/${current}/regenerate`, { grace_period: "1h" });
        if (res.status === 200) {
          won++;
          current = res.body.key;
        } else if (res.status === 409) conflicts++;
        else errors++;
      }
    }),
  );
  seconds = (performance.now() - t0) / 1000;
  const contended = {
    what: "regenerations, 3 replicas, one contended key",
    rotations: won,
    failures: `${conflicts} × 409, ${errors} other`,
    seconds: seconds.toFixed(2),
    "per second": Math.round(won / seconds),
  };

  const t1 = printTable(`Commit → eviction on every replica (target p99 ≤ 20 ms; lost notifications ≤ 2 s)`, rows);
  const t2 = printTable("Regenerations per second (target ≥ 300/s)", [spread, contended]);
  writeResult("propagation", { changes: CHANGES, lost_changes: LOST_CHANGES, propagation: rows, rotation: [spread, contended], markdown: `${t1}\n\n${t2}` });
} catch (err) {
  console.error(err);
  if (process.env.BENCH_DEBUG) for (const r of replicas) console.error(r.name, r.output.filter((l) => !l.includes('"msg":"request"')).join("\n"));
  process.exitCode = 1;
} finally {
  await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
  await db.drop();
  await ns.cleanup();
}
