// A model added through the API → its first successful request on every replica (3 replicas), and a deleted model
// → its first refusal everywhere. Times from the client's clock: from the admin answer to the first request that
// sees the change on each replica (requests are sent back to back, so the figure includes one request's time).
import { Pool } from "undici";
import { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, startReplica, writeResult } from "./lib/harness.mjs";

const ROUNDS = Number(process.env.BENCH_MODEL_ROUNDS ?? 30);
const MASTER = "sk-bench-master-key";
const db = await createDatabase();
const ns = redisNamespace();
const env = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: MASTER };
const replicas = [];

const admin = async (r, path, body) => {
  const res = await fetch(`${r.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
};

/** Milliseconds from now until `pool` answers `status` for `model`. */
async function until(pool, key, model, status) {
  const started = performance.now();
  for (;;) {
    const res = await pool.request({
      method: "POST",
      path: "/v1/chat/completions",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
    });
    await res.body.dump();
    if (res.statusCode === status) return performance.now() - started;
    if (performance.now() - started > 5_000) throw new Error(`no ${status} for ${model} after 5 s`);
  }
}

try {
  for (const name of ["A", "B", "C"]) replicas.push(await startReplica({ ...env, GATEHOUSE_REPLICA_ID: name }));
  const pools = replicas.map((r) => new Pool(r.url, { connections: 1, pipelining: 1 }));
  const key = (await admin(replicas[0], "/key/generate", {})).body.key;
  const added = [];
  const deleted = [];
  for (let i = 0; i < ROUNDS; i++) {
    const model = `bench-model-${i}`;
    const created = await admin(replicas[i % 3], "/model/new", { model_name: model, litellm_params: { model: `mock/${model}` } });
    if (created.status !== 200) throw new Error(`model/new: ${created.status}`);
    added.push(...(await Promise.all(pools.map((p) => until(p, key, model, 200)))));
    await admin(replicas[(i + 1) % 3], "/model/delete", { id: created.body.model_id });
    deleted.push(...(await Promise.all(pools.map((p) => until(p, key, model, 404)))));
  }
  const stats = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${percentile(s, 50).toFixed(1)} / ${percentile(s, 99).toFixed(1)} / ${s.at(-1).toFixed(1)} ms`;
  };
  const rows = [
    { what: `model added → first 200 on each of 3 replicas (${added.length} measurements): p50 / p99 / max`, value: stats(added) },
    { what: `model deleted → first 404 on each of 3 replicas (${deleted.length} measurements): p50 / p99 / max`, value: stats(deleted) },
  ];
  const table = printTable(`Models added and deleted through the API, ${ROUNDS} rounds, 3 replicas`, rows);
  writeResult("models", { rounds: ROUNDS, addedMs: added, deletedMs: deleted, markdown: table });
  await Promise.all(pools.map((p) => p.close()));
} finally {
  await Promise.all(replicas.map((r) => r.stop()));
  await db.drop();
  await ns.cleanup();
}
