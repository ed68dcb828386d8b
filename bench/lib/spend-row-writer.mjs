// A process that writes spend-log rows into Postgres as a busy replica's flush does — once a second, the rows of
// that second, in COPY batches of 1,000 — at `rate` rows a second, with nothing else to do. bench/spend-logs.mjs
// runs it beside a replica that logs nothing, to see what the same writes cost when they are not the replica's.
// Usage: node bench/lib/spend-row-writer.mjs <database url> <rows per second>; prints "ready" once migrated.
import { randomUUID } from "node:crypto";
import pg from "pg";

const { migrate } = await import("../../dist/store/migrator.js");
const { newRequestId } = await import("../../dist/http/request-id.js");
const { copySpendLogs } = await import("../../dist/store/spend-log-store.js");

const [url, rate] = process.argv.slice(2);
const pool = new pg.Pool({ connectionString: url, max: 1 });
await migrate(pool);
const key = { hash: randomUUID().replaceAll("-", "").repeat(2), id: randomUUID() };
const row = (start) => ({
  request_id: newRequestId(start),
  start_time: start,
  end_time: start + 3,
  client_request_id: null,
  key_hash: key.hash,
  key_id: key.id,
  key_name: "sk-...bench",
  key_alias: null,
  team_id: null,
  user_id: null,
  model: "bench",
  model_id: null,
  upstream_model: "bench",
  prompt_tokens: 5,
  completion_tokens: 16,
  total_tokens: 21,
  spend: 0.000037,
  latency_ms: 2.5,
  overhead_ms: 0.8,
  status: 200,
  error_code: null,
  stream: false,
  replica_id: "bench-writer",
  tags: [],
  metadata: {},
});
let last = Date.now();
let writing = false;
setInterval(async () => {
  const now = Date.now();
  // At most a second's rows: the seconds it spent stopped (SIGSTOP) or behind are not made up.
  const n = Math.round((Math.min(now - last, 1000) / 1000) * Number(rate));
  last = now;
  if (writing) return;
  writing = true;
  try {
    const rows = Array.from({ length: n }, (_, i) => row(now - 1000 + Math.floor((i * 1000) / Math.max(n, 1))));
    for (let i = 0; i < rows.length; i += 1000) {
      const tx = await pool.connect();
      try {
        await tx.query("BEGIN");
        await copySpendLogs(tx, rows.slice(i, i + 1000));
        await tx.query("COMMIT");
      } finally {
        tx.release();
      }
    }
  } finally {
    writing = false;
  }
}, 1000);
console.log("ready");
