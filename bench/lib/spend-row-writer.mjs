// A process that writes spend-log rows into Postgres as a busy replica's flush does — once a second, the rows of
// that second, in COPY batches of spend_logs.batch_rows with their daily totals, one transaction each — at a given rate, and does
// nothing else. bench/spend-logs.mjs runs it beside a replica that logs nothing, so that Postgres does the same
// work as for a replica that logs: what then remains between the two replicas is the gateway's own cost.
// So that this process itself costs as little as it can while it writes, every batch it will send is encoded
// (by the gateway's own encoder) before it says "ready": while it writes, it only sends them.
// Usage: node bench/lib/spend-row-writer.mjs <database url> <rows per second> <rows to prepare>; a line on stdin
// sets a new rate. Past the prepared rows it encodes as it goes (and says so on stderr).
import { createInterface } from "node:readline";
import pg from "pg";

const { migrate } = await import("../../dist/store/migrator.js");
const { newRequestId } = await import("../../dist/http/request-id.js");
const { SpendLogBatch } = await import("../../dist/store/spend-log-copy.js");
const { copySpendLogBatch } = await import("../../dist/store/spend-log-store.js");

const [url, initialRate, prepare] = process.argv.slice(2);
let rate = Number(initialRate);
createInterface({ input: process.stdin }).on("line", (line) => {
  if (Number.isFinite(Number(line))) rate = Number(line);
});
const pool = new pg.Pool({ connectionString: url, max: 1 });
await migrate(pool);

// Rows per COPY, as a replica's (spend_logs.batch_rows).
const { gatehouseSettingsSchema } = await import("../../dist/config/schema.js");
const BATCH = gatehouseSettingsSchema.parse({}).spendLogs.batchRows;
const key = { hash: "b".repeat(64), id: "00000000-0000-4000-8000-00000000000b" };
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

// Rows' start times advance by a fixed step from now, as a replica's would, so that the primary key takes each
// at its right edge; a few minutes ahead of the clock or behind it lands in the same day's partitions.
let nextStart = Date.now();
const STEP_MS = 1000 / Math.max(rate, 1);

/** A batch of BATCH rows, encoded: what copySpendLogBatch needs of it. */
function encodeBatch() {
  const rows = [];
  for (let i = 0; i < BATCH; i++) {
    nextStart += STEP_MS;
    rows.push(row(Math.floor(nextStart)));
  }
  const batch = SpendLogBatch.of(rows);
  const encoded = { rows: BATCH, data: Buffer.from(batch.copyData()), totals: batch.dailyTotals() };
  batch.release();
  return { rows: encoded.rows, copyData: () => encoded.data, dailyTotals: () => encoded.totals };
}

const prepared = Array.from({ length: Math.ceil(Number(prepare ?? 0) / BATCH) }, encodeBatch);
let warned = false;
function nextBatch() {
  if (prepared.length > 0) return prepared.shift();
  if (!warned) console.error("spend-row-writer: past the prepared rows; encoding as it writes");
  warned = true;
  return encodeBatch();
}

let last = Date.now();
let owed = 0;
let writing = false;
setInterval(async () => {
  const now = Date.now();
  // At most a second's rows: the seconds it spent stopped (SIGSTOP) or behind are not made up.
  owed += (Math.min(now - last, 1000) / 1000) * rate;
  last = now;
  if (writing) return;
  writing = true;
  try {
    // Whole batches, as a replica's flush sends them; the rest is owed to the next second.
    for (; owed >= BATCH; owed -= BATCH) {
      const tx = await pool.connect();
      try {
        await tx.query("BEGIN");
        await copySpendLogBatch(tx, nextBatch());
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
