import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { isUuid, type Queryable } from "./db.js";
import { COPY_SPEND_LOGS, type DailyTotal, epochMs, perSharedFields, SHARED_COLUMNS, SpendLogBatch } from "./spend-log-copy.js";
import type { DailySums, SpendLogRow } from "./spend-log-row.js";

/**
 * The only module that reads or writes `gh_spend_logs` and `gh_spend_daily` (sql/0010_spend_logs.sql).
 * Owners: spendlogs/spend-log-writer.ts (writes), upkeep (partitions, retention), the /spend routes (reads).
 */

// The daily totals a batch adds to: per day, key, team, user and model (none is null: '' stands for none), in
// one order (day, then the texts byte by byte), so that two replicas adding to the same totals lock them in the
// same order rather than deadlock. Each also keeps the key its token belongs to (sql/0016), so a key's spend is
// one group across its rotations.
const DAILY_INSERT = `INSERT INTO gh_spend_daily AS d (day, key_hash, team_id, user_id, model, requests, failed_requests, prompt_tokens, completion_tokens, spend, key_id)`;
const DAILY_ADD = `ON CONFLICT (day, key_hash, team_id, user_id, model) DO UPDATE SET
    requests = d.requests + EXCLUDED.requests, failed_requests = d.failed_requests + EXCLUDED.failed_requests,
    prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
    spend = d.spend + EXCLUDED.spend, key_id = COALESCE(d.key_id, EXCLUDED.key_id)`;

// The JSON batch: one statement, and the daily totals get exactly those rows (RETURNING), so the two agree.
// Committed entirely or not at all.
//
// The batch travels compact (wireBatch below): what a request shares with many others — its key, team, user,
// model, deployment and replica — once per batch in $2, and per row only what is its own, under short names, with
// times as epoch milliseconds. Parsing JSON is most of what a row costs Postgres, and this is a third of the text
// of one object per row with every field spelled out. json, not jsonb: the batch is read once.
const insertBatch = (onConflict: string) => `
WITH dim AS (
  SELECT * FROM json_to_recordset($2::json) AS x(d int, key_hash text, key_id uuid, key_name text, key_alias text, team_id text, user_id text,
    model text, model_id text, upstream_model text, replica_id text)
), batch AS (
  SELECT * FROM json_to_recordset($1::json) AS r(d int, r uuid, s float8, e float8, cr text, p integer, c integer, "$" float8, l float8,
    o float8, st smallint, ec text, sm boolean, g text[], m jsonb)
), inserted AS (
  INSERT INTO gh_spend_logs (request_id, start_time, end_time, client_request_id, key_hash, key_id, key_name, key_alias, team_id, user_id, model,
    model_id, upstream_model, prompt_tokens, completion_tokens, total_tokens, spend, latency_ms, overhead_ms, status, error_code, stream,
    replica_id, tags, metadata)
  SELECT b.r, to_timestamp(b.s / 1000), to_timestamp(b.e / 1000), b.cr, dim.key_hash, dim.key_id, dim.key_name, dim.key_alias, dim.team_id,
    dim.user_id, dim.model, dim.model_id, dim.upstream_model, b.p, b.c, b.p + b.c, b."$", b.l, b.o, b.st, b.ec, COALESCE(b.sm, false),
    dim.replica_id, COALESCE(b.g, '{}'), COALESCE(b.m, '{}'::jsonb)
  FROM batch b JOIN dim USING (d)
  ${onConflict}
  RETURNING start_time, key_hash, key_id, team_id, user_id, model, status, prompt_tokens, completion_tokens, spend
), daily AS (
  ${DAILY_INSERT}
  SELECT (start_time AT TIME ZONE 'UTC')::date, COALESCE(key_hash, ''), COALESCE(team_id, ''), COALESCE(user_id, ''), model,
    count(*), count(*) FILTER (WHERE status >= 400), sum(prompt_tokens), sum(completion_tokens), sum(spend), min(key_id::text)::uuid
  FROM inserted GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, COALESCE(key_hash, '') COLLATE "C", COALESCE(team_id, '') COLLATE "C", COALESCE(user_id, '') COLLATE "C", model COLLATE "C"
  ${DAILY_ADD}
  RETURNING 1
)
SELECT (SELECT count(*) FROM inserted)::int AS inserted`;

// A batch never written before: a row already there (same request id and start) fails the whole statement with a
// unique violation, and nothing is written. Checking every row for a conflict (ON CONFLICT's speculative
// insertion) costs Postgres about a sixth of the row's whole cost, for a case that only a retry can meet.
const INSERT_NEW_BATCH = insertBatch("");
// A batch that may have been written already (a retry after an unknown outcome, a journal replayed): the rows
// already there are skipped, the others inserted; the daily totals get only those.
const INSERT_BATCH_ONCE = insertBatch("ON CONFLICT DO NOTHING");

/**
 * The batch as sent (see insertBatch): the distinct (key, team, user, model, deployment, replica) of its rows, and
 * per row its own fields under short names, null and empty ones left out. total_tokens is prompt + completion.
 */
function wireBatch(rows: readonly SpendLogRow[]): [string, string] {
  const dims: Array<Record<string, unknown>> = [];
  const dimOf = perSharedFields((row) => {
    const d = dims.length;
    const dim: Record<string, unknown> = { d };
    for (const f of SHARED_COLUMNS) dim[f] = row[f];
    dims.push(dim);
    return d;
  });
  const compact = rows.map((row) => {
    const d = dimOf(row);
    const out: Record<string, unknown> = { d, r: row.request_id, s: epochMs(row.start_time), e: epochMs(row.end_time), p: row.prompt_tokens, c: row.completion_tokens };
    out.$ = row.spend;
    out.l = row.latency_ms;
    out.st = row.status;
    if (row.overhead_ms !== null) out.o = row.overhead_ms;
    if (row.client_request_id !== null) out.cr = row.client_request_id;
    if (row.error_code !== null) out.ec = row.error_code;
    if (row.stream) out.sm = true;
    if (row.tags?.length > 0) out.g = row.tags;
    if (row.metadata && Object.keys(row.metadata).length > 0) out.m = row.metadata;
    return out;
  });
  return [JSON.stringify(compact), JSON.stringify(dims)];
}

/**
 * Writes a batch; returns how many rows were new. `mayRepeat`: the batch may have been written before, in part or
 * whole; without it, a batch with a row already there is refused whole (SQLSTATE 23505), for the caller to send
 * again with `mayRepeat`.
 */
export async function insertSpendLogs(db: Queryable, rows: readonly SpendLogRow[], mayRepeat = true): Promise<number> {
  const { rows: out } = await db.query<{ inserted: number }>(mayRepeat ? INSERT_BATCH_ONCE : INSERT_NEW_BATCH, wireBatch(rows));
  return out[0]!.inserted;
}

/**
 * Writes a batch never written before with a binary COPY (spend-log-copy.ts: the cheapest way in for Postgres)
 * and adds it to the daily totals. `tx` must be inside a transaction, so that the two commit together. A row
 * already there refuses the whole batch (SQLSTATE 23505), for the caller to send its rows again through
 * insertSpendLogs(…, mayRepeat). Not for the embedded database: PGlite takes no COPY over its socket.
 */
export async function copySpendLogBatch(tx: pg.ClientBase, batch: SpendLogBatch): Promise<number> {
  const data = batch.copyData();
  await new Promise<void>((resolve, reject) => {
    const copy = tx.query(copyFrom(COPY_SPEND_LOGS));
    copy.on("error", reject);
    copy.on("finish", resolve);
    copy.end(data);
  });
  await addToDailyTotals(tx, batch.dailyTotals());
  return batch.rows;
}

/** copySpendLogBatch for rows at hand (tests, the bench's writer); a value no column can hold throws a data error. */
export async function copySpendLogs(tx: pg.ClientBase, rows: readonly SpendLogRow[]): Promise<number> {
  const batch = SpendLogBatch.of(rows);
  const n = await copySpendLogBatch(tx, batch);
  batch.release();
  return n;
}

const DAY_MS = 86_400_000;

/** A batch's daily totals (already in lock order: SpendLogBatch.dailyTotals), added in one statement. */
async function addToDailyTotals(tx: pg.ClientBase, sorted: readonly DailyTotal[]): Promise<void> {
  const column = <K extends keyof DailyTotal>(k: K) => sorted.map((t) => t[k]);
  await tx.query(
    `${DAILY_INSERT}
     SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::float8[], $11::uuid[])
     ${DAILY_ADD}`,
    [
      sorted.map((t) => new Date(t.day * DAY_MS).toISOString().slice(0, 10)),
      column("key_hash"),
      column("team_id"),
      column("user_id"),
      column("model"),
      column("requests"),
      column("failed_requests"),
      column("prompt_tokens"),
      column("completion_tokens"),
      column("spend"),
      column("key_id"),
    ],
  );
}

const PARTITION_LOCK = 0x5e4d_1065; // any constant: serialises partition DDL across replicas

/** The name of a day's partition: gh_spend_logs_YYYYMMDD. */
export function partitionName(day: Date): string {
  return `gh_spend_logs_${day.toISOString().slice(0, 10).replaceAll("-", "")}`;
}

/**
 * Creates the daily partitions of [from, from + days) that do not exist yet. A day whose rows already sit in the
 * default partition cannot get its own (Postgres refuses): it is skipped and its rows stay where they are.
 * Returns the partitions created.
 */
export async function ensureDailyPartitions(db: { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> }, from: Date, days: number): Promise<string[]> {
  const created: string[] = [];
  for (let i = 0; i < days; i++) {
    const day = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate() + i));
    const next = new Date(day.getTime() + 86_400_000);
    const name = partitionName(day);
    const made = await db
      .transaction(async (tx) => {
        await tx.query("SELECT pg_advisory_xact_lock($1)", [PARTITION_LOCK]);
        const exists = await tx.query("SELECT 1 FROM pg_class WHERE relname = $1", [name]);
        if (exists.rowCount) return false;
        // Identifiers cannot be parameters; the name is built from a date, never from input.
        await tx.query(`CREATE TABLE ${name} PARTITION OF gh_spend_logs FOR VALUES FROM ('${day.toISOString()}') TO ('${next.toISOString()}')`);
        return true;
      })
      .catch(() => false);
    if (made) created.push(name);
  }
  return created;
}

/** Drops the daily partitions that end before `cutoff`, and deletes older rows from the default partition. */
export async function dropSpendLogsBefore(db: Queryable, cutoff: Date): Promise<{ dropped: string[]; deleted: number }> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.relname = 'gh_spend_logs' AND c.relname ~ '^gh_spend_logs_[0-9]{8}$' ORDER BY 1`,
  );
  const dropped: string[] = [];
  for (const { name } of rows) {
    const d = name.slice(-8);
    const end = Date.UTC(Number(d.slice(0, 4)), Number(d.slice(4, 6)) - 1, Number(d.slice(6, 8))) + 86_400_000;
    if (end > cutoff.getTime()) continue;
    await db.query(`DROP TABLE IF EXISTS ${name}`);
    dropped.push(name);
  }
  const { rowCount } = await db.query("DELETE FROM gh_spend_logs_default WHERE start_time < $1", [cutoff]);
  return { dropped, deleted: rowCount ?? 0 };
}

export interface SpendLogQuery {
  keyHash?: string | undefined;
  keyId?: string | undefined;
  teamId?: string | undefined;
  userId?: string | undefined;
  requestId?: string | undefined;
  start?: Date | undefined;
  end?: Date | undefined;
  limit: number;
  offset: number;
}

/** Newest first. `requestId` matches Gatehouse's request id or the client's x-request-id. */
export async function findSpendLogs(db: Queryable, q: SpendLogQuery): Promise<SpendLogRow[]> {
  // key_hash has no index of its own (every index is paid on every row written): a key still known is found by its
  // key_id, which has one; a deleted key's rows are found by their hash alone.
  let keyId = q.keyId;
  if (q.keyHash !== undefined && keyId === undefined) {
    const known = await db.query<{ key_id: string }>("SELECT key_id FROM gh_keys WHERE token = $1 UNION ALL SELECT key_id FROM gh_deprecated_keys WHERE token = $1 LIMIT 1", [
      q.keyHash,
    ]);
    keyId = known.rows[0]?.key_id;
  }
  const params: unknown[] = [q.keyHash ?? null, q.teamId ?? null, q.userId ?? null, q.requestId ?? null, q.start ?? null, q.end ?? null, q.limit, q.offset, keyId ?? null];
  const { rows } = await db.query<SpendLogRow>(
    `SELECT * FROM gh_spend_logs
     WHERE ($1::text IS NULL OR key_hash = $1) AND ($9::uuid IS NULL OR key_id = $9) AND ($2::text IS NULL OR team_id = $2) AND ($3::text IS NULL OR user_id = $3)
       AND ($4::text IS NULL OR client_request_id = $4 ${ownRequestId(q.requestId, params)})
       AND ($5::timestamptz IS NULL OR start_time >= $5) AND ($6::timestamptz IS NULL OR start_time < $6)
     ORDER BY start_time DESC, request_id LIMIT $7 OFFSET $8`,
    params,
  );
  return rows;
}

/**
 * How far a row's start may be from the time its request id carries: both are taken as the request begins, in the
 * same step, so a second is plenty. (Rows written before request ids were made from the request's start could
 * carry a later time when the client named its request: those are found by the client's x-request-id.)
 */
const REQUEST_ID_TIME_WINDOW_MS = 1_000;
/** The rows whose request id is random (older than UUIDv7): the only ones the request-id index holds (sql/0013). */
const RANDOM_REQUEST_ID = "substr(request_id::text, 15, 1) <> '7'";

/**
 * The condition (appended to `params`) matching Gatehouse's own request id, beside the client's x-request-id: a
 * UUIDv7 through the primary key (start_time, request_id), near the time its first 48 bits carry; an older, random
 * one through the partial index only such ids enter; text that is no UUID matches no request id.
 */
function ownRequestId(requestId: string | undefined, params: unknown[]): string {
  if (requestId === undefined || !isUuid(requestId)) return "";
  params.push(requestId);
  const id = `$${params.length}::uuid`;
  if (requestId[14] !== "7") return `OR (request_id = ${id} AND ${RANDOM_REQUEST_ID})`;
  const ms = Number.parseInt(requestId.slice(0, 8) + requestId.slice(9, 13), 16);
  params.push(new Date(ms - REQUEST_ID_TIME_WINDOW_MS), new Date(ms + REQUEST_ID_TIME_WINDOW_MS));
  return `OR (request_id = ${id} AND start_time BETWEEN $${params.length - 1} AND $${params.length})`;
}

export type SpendGroup = "team" | "key" | "user" | "model";

const GROUP_COLUMN: Record<SpendGroup, string> = { team: "team_id", key: "key_hash", user: "user_id", model: "model" };

export interface DailySpend extends DailySums {
  day: string;
  group: string;
  /** By key: the key the group's token belongs to (null when not known: the master key, or a row from before sql/0016 of a token no key lists any more). */
  key_id: string | null;
  model: string;
}

/** Daily totals over [start, end] (days, inclusive), by `group` and model, from the daily aggregates. */
export async function dailySpend(db: Queryable, group: SpendGroup, start: string, end: string, filter: { column: SpendGroup; value: string } | null): Promise<DailySpend[]> {
  const column = GROUP_COLUMN[group];
  const where = filter ? `AND ${GROUP_COLUMN[filter.column]} = $3` : "";
  const { rows } = await db.query<DailySpend>(
    `SELECT to_char(day, 'YYYY-MM-DD') AS day, ${column} AS "group", ${group === "key" ? "min(key_id::text)" : "NULL"} AS key_id, model, sum(requests)::float8 AS requests,
       sum(failed_requests)::float8 AS failed_requests, sum(prompt_tokens)::float8 AS prompt_tokens,
       sum(completion_tokens)::float8 AS completion_tokens, sum(spend) AS spend
     FROM gh_spend_daily WHERE day BETWEEN $1::date AND $2::date ${where}
     GROUP BY day, ${column}, model ORDER BY day, ${column}, model`,
    filter ? [start, end, filter.value] : [start, end],
  );
  return rows;
}
