import type { DailySums, SpendLogRow } from "./spend-log-row.js";

/**
 * Spend log rows in Postgres's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html,
 * "Binary Format"): the cheapest way into the table for Postgres, which then parses no text at all — no JSON,
 * no dates, no numbers, no UUIDs. About 40 % less Postgres CPU per row than the JSON batch (docs/spend-logs.md).
 *
 * Each field is its type's binary "send" form, so the column types here and in sql/0010_spend_logs.sql must
 * agree exactly: a mismatch is refused by Postgres (the batch then goes the JSON way, row by row), never stored
 * wrong. test/spend-logs.test.ts reads every column back.
 *
 * Hand-written rather than a generic encoder library: the format is small and fixed, and per-field dispatch
 * would cost the replica more than the whole row costs here (~1 µs).
 *
 * A row is encoded the moment its request finishes (SpendLogBatch.add), not when its batch is written: a queued
 * row is then a few hundred bytes outside the JavaScript heap, not an object of 25 fields that lives for up to a
 * flush interval. Objects that live that long are allocated by V8 straight into its old generation, and every
 * young string they point to is recorded for the next scavenge: that cost the request path more than all the
 * rest of logging (docs/spend-logs.md, "Cost").
 */

/**
 * The fields a request shares with the others of its key, model and replica: both ways in (this COPY and the
 * store's JSON batch) encode them once per batch. First in each COPY row, in this order.
 */
export const SHARED_COLUMNS = ["key_hash", "key_id", "key_name", "key_alias", "team_id", "user_id", "model", "model_id", "upstream_model", "replica_id"] as const;
const OWN_COLUMNS = [
  "request_id",
  "start_time",
  "end_time",
  "client_request_id",
  "prompt_tokens",
  "completion_tokens",
  "total_tokens",
  "spend",
  "latency_ms",
  "overhead_ms",
  "status",
  "error_code",
  "stream",
  "tags",
  "metadata",
] as const;
const COLUMN_COUNT = SHARED_COLUMNS.length + OWN_COLUMNS.length;

export const COPY_SPEND_LOGS = `COPY gh_spend_logs (${[...SHARED_COLUMNS, ...OWN_COLUMNS].join(", ")}) FROM STDIN (FORMAT binary)`;

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
/** Postgres's epoch (2000-01-01 UTC) in Unix epoch milliseconds. */
const POSTGRES_EPOCH_MS = 946_684_800_000;
const TEXT_OID = 25;
const EMPTY_TEXT_ARRAY = Buffer.from([0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, TEXT_OID]); // no dimensions
const EMPTY_JSONB = Buffer.from([0, 0, 0, 3, 1, 0x7b, 0x7d]); // version 1, "{}"
// A hex digit's value by its character code; -1 for any other ASCII character.
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = HEX[65 + i] = 10 + i;
/** Where each of a canonical uuid's 16 bytes begins in its text (8-4-4-4-12 hex digits). */
const UUID_BYTE_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

const hexValue = (text: string, at: number): number => {
  const c = text.charCodeAt(at);
  return c < 128 ? HEX[c]! : -1;
};

/*
 * Big-endian integers written byte by byte: each field's length and most values are one, and Buffer's
 * writeInt32BE checks the value's range in a call of its own. Here every caller checks it first (a value out of range
 * would be written wrapped, not refused). A typed array keeps the low 8 bits of what is stored, so a negative int32
 * is written as its two's complement.
 */
function be32(buf: Buffer, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

function be16(buf: Buffer, at: number, v: number): void {
  buf[at] = v >>> 8;
  buf[at + 1] = v;
}

/** A growing buffer with the field writers COPY needs; each writes the field's length, then its value. */
class FieldWriter {
  buf: Buffer;
  at = 0;

  constructor(sizeOrBuffer: number | Buffer) {
    // Never from Node's shared pool: the memory is handed on whole (SpendLogBatch.release).
    this.buf = typeof sizeOrBuffer === "number" ? Buffer.allocUnsafeSlow(sizeOrBuffer) : sizeOrBuffer;
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  int16(v: number): void {
    this.room(2);
    be16(this.buf, this.at, v);
    this.at += 2;
  }

  int32(v: number): void {
    this.room(4);
    be32(this.buf, this.at, v);
    this.at += 4;
  }

  null(): void {
    this.int32(-1);
  }

  text(s: string | null): void {
    if (s === null || s === undefined) {
      this.null();
      return;
    }
    const n = Buffer.byteLength(s);
    this.room(4 + n);
    be32(this.buf, this.at, n);
    this.buf.write(s, this.at + 4);
    this.at += 4 + n;
  }

  /** 16 bytes from the canonical text form; anything else is refused as Postgres would refuse it (22P02). */
  uuid(s: string | null): void {
    if (s === null || s === undefined) {
      this.null();
      return;
    }
    if (s.length !== 36) throw dataError("22P02", `not a uuid: ${s.slice(0, 40)}`);
    if (s.charCodeAt(8) !== 45 || s.charCodeAt(13) !== 45 || s.charCodeAt(18) !== 45 || s.charCodeAt(23) !== 45) throw dataError("22P02", `not a uuid: ${s}`);
    this.room(20);
    const buf = this.buf;
    const at = this.at;
    be32(buf, at, 16);
    for (let k = 0; k < 16; k++) {
      const from = UUID_BYTE_AT[k]!;
      const hi = hexValue(s, from);
      const lo = hexValue(s, from + 1);
      if (hi < 0 || lo < 0) throw dataError("22P02", `not a uuid: ${s}`);
      buf[at + 4 + k] = (hi << 4) | lo;
    }
    this.at += 20;
  }

  /** timestamptz: microseconds since 2000-01-01 UTC, as a 64-bit integer (written as two 32-bit halves). */
  timestamp(ms: number): void {
    const us = Math.round((ms - POSTGRES_EPOCH_MS) * 1000);
    const high = Math.floor(us / 4_294_967_296);
    // Beyond 64-bit microseconds (some 292,000 years from 2000): refused as Postgres refuses a time out of range.
    if (high < -2_147_483_648 || high > 2_147_483_647) throw dataError("22008", `a time out of range: ${String(ms).slice(0, 40)}`);
    this.room(12);
    be32(this.buf, this.at, 8);
    be32(this.buf, this.at + 4, high);
    be32(this.buf, this.at + 8, us - high * 4_294_967_296);
    this.at += 12;
  }

  // A missing number is sent as NULL, so that Postgres refuses it for the NOT NULL column (23502) instead of it
  // being stored as 0 (a damaged journal line is then set aside, as the JSON batch does); a number of the wrong
  // kind, out of its column's range or not finite (a NaN would poison the day's total) is refused here (22003).
  private missing(v: unknown): void {
    if (v !== null && v !== undefined) badNumber(v);
    this.null();
  }

  int4(v: number | null): void {
    this.integer(v, 4, 2_147_483_647);
  }

  int2(v: number | null): void {
    this.integer(v, 2, 32_767);
  }

  private integer(v: number | null, size: 2 | 4, max: number): void {
    if (!Number.isInteger(v) || v! < -max - 1 || v! > max) {
      this.missing(v);
      return;
    }
    this.room(4 + size);
    be32(this.buf, this.at, size);
    if (size === 4) be32(this.buf, this.at + 4, v!);
    else be16(this.buf, this.at + 4, v!);
    this.at += 4 + size;
  }

  float8(v: number | null): void {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.missing(v);
      return;
    }
    this.room(12);
    be32(this.buf, this.at, 8);
    this.buf.writeDoubleBE(v, this.at + 4);
    this.at += 12;
  }

  bool(v: boolean): void {
    this.room(5);
    be32(this.buf, this.at, 1);
    this.buf[this.at + 4] = v ? 1 : 0;
    this.at += 5;
  }

  textArray(a: readonly string[] | null | undefined): void {
    if (!a || a.length === 0) {
      this.bytes(EMPTY_TEXT_ARRAY);
      return;
    }
    const start = this.at;
    this.int32(0); // the field's length, known at the end
    this.int32(1); // dimensions
    this.int32(0); // no nulls
    this.int32(TEXT_OID);
    this.int32(a.length);
    this.int32(1); // lower bound
    for (const s of a) this.text(s);
    be32(this.buf, start, this.at - start - 4);
  }

  jsonb(value: Record<string, unknown> | null | undefined): void {
    if (!value || isEmpty(value)) {
      this.bytes(EMPTY_JSONB);
      return;
    }
    const json = JSON.stringify(value);
    const n = Buffer.byteLength(json);
    this.room(5 + n);
    be32(this.buf, this.at, n + 1);
    this.buf[this.at + 4] = 1; // jsonb's binary format version
    this.buf.write(json, this.at + 5);
    this.at += 5 + n;
  }
}

function isEmpty(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

function dataError(code: string, message: string): Error {
  return Object.assign(new Error(`a spend log row cannot be stored: ${message}`), { code });
}

function badNumber(v: unknown): never {
  throw dataError("22003", `not a number its column can hold: ${String(v).slice(0, 40)}`);
}

/** A row's time in epoch ms; a time that is not one (a damaged journal line) is refused as Postgres would (22007). */
export function epochMs(t: number | string): number {
  const ms = typeof t === "number" ? t : Date.parse(t);
  if (!Number.isFinite(ms)) throw dataError("22007", `a time that is not one: ${String(t).slice(0, 40)}`);
  return ms;
}

/**
 * A lookup of what `make` made once for each distinct set of shared fields among rows (the COPY's encoded prefix,
 * the JSON batch's dimensions). Rows of one busy key follow each other: most rows share the previous row's
 * fields, and need no lookup at all. A set `make` throws for is not remembered: the next row with it throws too.
 */
export function perSharedFields<T>(make: (row: SpendLogRow) => T): (row: SpendLogRow) => T {
  const made = new Map<string, T>();
  let previous: unknown[] | undefined;
  let previousMade: T;
  return (row) => {
    if (previous !== undefined && sameShared(row, previous)) return previousMade;
    const values = SHARED_COLUMNS.map((f) => row[f]);
    // Exact by construction (a JSON array of the values): no two different tuples share a key, nulls included.
    const id = JSON.stringify(values);
    let m = made.get(id);
    if (m === undefined) {
      m = make(row);
      made.set(id, m);
    }
    previous = values;
    previousMade = m;
    return m;
  };
}

const DAY_MS = 86_400_000;

/**
 * A batch's sums for one row of gh_spend_daily (its day as days since the epoch; '' for no key, team or user), and
 * the key its token belongs to (null for none).
 */
export interface DailyTotal extends DailySums {
  day: number;
  key_hash: string;
  key_id: string | null;
  team_id: string;
  user_id: string;
  model: string;
}

/** What the rows of a batch sharing one set of shared fields have in common: their encoding, and their daily sums. */
interface SharedFields {
  bytes: Buffer;
  /** What a daily total is kept by, besides its day ('' for none). */
  key_hash: string;
  /** The key of that token (a token belongs to one key), kept beside the total. */
  key_id: string | null;
  team_id: string;
  user_id: string;
  model: string;
  /** Per day (days since the epoch); most batches see one day, kept aside from the map. */
  lastDay: number;
  lastTotal: DailyTotal | undefined;
  totals: Map<number, DailyTotal>;
}

// The memory batches are encoded into, kept for the next batches: a megabyte or more allocated outside the JS heap
// for every batch makes V8 start its garbage collections sooner (it counts such memory too), and the kernel faults
// in every page of it anew.
const spares: Buffer[] = [];
const MAX_SPARES = 4;
const FIRST_SIZE = 64 * 1024;

/**
 * Spend log rows, encoded as they arrive into one COPY's data, with their sums for the daily totals. A batch is
 * written whole (store/spend-log-store.ts copySpendLogBatch) or, where COPY cannot be used, read back with rowsBack().
 */
export class SpendLogBatch {
  private readonly out = new FieldWriter(spares.pop() ?? FIRST_SIZE);
  private readonly shared: SharedFields[] = [];
  /** The shared fields of a (key, team, user, model, deployment, replica), encoded once and copied per row. */
  private readonly sharedFieldsOf = perSharedFields((row): SharedFields => {
    const w = new FieldWriter(256);
    w.text(row.key_hash);
    w.uuid(row.key_id);
    w.text(row.key_name);
    w.text(row.key_alias);
    w.text(row.team_id);
    w.text(row.user_id);
    w.text(row.model);
    w.text(row.model_id);
    w.text(row.upstream_model);
    w.text(row.replica_id);
    const shared: SharedFields = {
      bytes: Buffer.from(w.buf.subarray(0, w.at)),
      key_hash: row.key_hash ?? "",
      key_id: row.key_id ?? null,
      team_id: row.team_id ?? "",
      user_id: row.user_id ?? "",
      model: row.model,
      lastDay: Number.NaN,
      lastTotal: undefined,
      totals: new Map(),
    };
    this.shared.push(shared);
    return shared;
  });
  private ended = false;
  private released = false;
  /** Rows in the batch. */
  rows = 0;

  constructor() {
    this.out.bytes(SIGNATURE);
    this.out.int32(0); // flags
    this.out.int32(0); // header extension length
  }

  /** A batch of `rows` (tests, the bench's writer); throws as add() does. */
  static of(rows: readonly SpendLogRow[]): SpendLogBatch {
    const batch = new SpendLogBatch();
    for (const row of rows) batch.add(row);
    return batch;
  }

  /**
   * Encodes a row into the batch. A value no column can hold (a time that is not one, a number out of its
   * column's range) throws a data error (SQLSTATE class 22, as Postgres would say) and leaves the batch as it was.
   */
  add(row: SpendLogRow): void {
    if (this.ended) throw new Error("a spend log batch takes no rows once ended");
    const out = this.out;
    const rowStart = out.at;
    try {
      const start = epochMs(row.start_time);
      const shared = this.sharedFieldsOf(row);
      out.int16(COLUMN_COUNT);
      out.bytes(shared.bytes);
      out.uuid(row.request_id);
      out.timestamp(start);
      out.timestamp(epochMs(row.end_time));
      out.text(row.client_request_id);
      out.int4(row.prompt_tokens);
      out.int4(row.completion_tokens);
      out.int4(row.prompt_tokens + row.completion_tokens);
      out.float8(row.spend);
      out.float8(row.latency_ms);
      out.float8(row.overhead_ms);
      out.int2(row.status);
      out.text(row.error_code);
      out.bool(row.stream === true);
      out.textArray(row.tags);
      out.jsonb(row.metadata);
      addToTotal(dailyTotalOf(shared, Math.floor(start / DAY_MS)), row);
    } catch (err) {
      out.at = rowStart;
      throw err;
    }
    this.rows++;
  }

  /** The COPY data: signature, header, one tuple per row, trailer. The batch takes no more rows. */
  copyData(): Buffer {
    if (!this.ended) {
      this.out.int16(-1);
      this.ended = true;
    }
    return this.out.buf.subarray(0, this.out.at);
  }

  /**
   * The batch's sums per day, key, team, user and model (as the JSON batch's daily step makes them), in the order
   * every writer adds them (day, then the texts byte by byte), so that two replicas adding to the same totals lock
   * them in the same order rather than deadlock.
   */
  dailyTotals(): DailyTotal[] {
    const merged = new Map<string, DailyTotal>();
    for (const shared of this.shared) {
      for (const t of shared.totals.values()) {
        // NUL never occurs in Postgres text: the parts cannot run into each other.
        const id = `${t.day}\0${t.key_hash}\0${t.team_id}\0${t.user_id}\0${t.model}`;
        const m = merged.get(id);
        if (m === undefined) merged.set(id, { ...t });
        else {
          m.key_id ??= t.key_id;
          m.requests += t.requests;
          m.failed_requests += t.failed_requests;
          m.prompt_tokens += t.prompt_tokens;
          m.completion_tokens += t.completion_tokens;
          m.spend += t.spend;
        }
      }
    }
    return [...merged.values()].sort(
      (a, b) => a.day - b.day || compare(a.key_hash, b.key_hash) || compare(a.team_id, b.team_id) || compare(a.user_id, b.user_id) || compare(a.model, b.model),
    );
  }

  /** The rows back, as they were given (times as epoch milliseconds): for the ways in that take no COPY, and the journal. */
  rowsBack(): SpendLogRow[] {
    return decodeSpendLogs(this.copyData());
  }

  /**
   * Postgres has taken the batch: its memory may hold a later one. Not called after a failed COPY, whose bytes
   * may still be queued on the socket: that memory is left to the garbage collector.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (spares.length < MAX_SPARES) spares.push(this.out.buf);
  }
}

/** Does `row` hold `values` (SHARED_COLUMNS' values, in that order)? Spelled out: a keyed loop over the names cost more. */
function sameShared(row: SpendLogRow, values: readonly unknown[]): boolean {
  return (
    row.key_hash === values[0] &&
    row.key_id === values[1] &&
    row.key_name === values[2] &&
    row.key_alias === values[3] &&
    row.team_id === values[4] &&
    row.user_id === values[5] &&
    row.model === values[6] &&
    row.model_id === values[7] &&
    row.upstream_model === values[8] &&
    row.replica_id === values[9]
  );
}

function dailyTotalOf(shared: SharedFields, day: number): DailyTotal {
  if (shared.lastDay === day) return shared.lastTotal!;
  let t = shared.totals.get(day);
  if (t === undefined) {
    t = {
      day,
      key_hash: shared.key_hash,
      key_id: shared.key_id,
      team_id: shared.team_id,
      user_id: shared.user_id,
      model: shared.model,
      requests: 0,
      failed_requests: 0,
      prompt_tokens: 0,
      completion_tokens: 0,
      spend: 0,
    };
    shared.totals.set(day, t);
  }
  shared.lastDay = day;
  shared.lastTotal = t;
  return t;
}

function addToTotal(t: DailyTotal, row: SpendLogRow): void {
  t.requests++;
  if (row.status >= 400) t.failed_requests++;
  t.prompt_tokens += row.prompt_tokens;
  t.completion_tokens += row.completion_tokens;
  t.spend += row.spend;
}

// The order of the texts' UTF-8 bytes, as COLLATE "C" orders them in the JSON batch's daily step (JavaScript's own
// string order, by UTF-16 code units, differs for characters beyond U+FFFF). Only a batch's few totals are sorted.
const compare = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/**
 * The rows of COPY data made by SpendLogBatch, read back field by field (the reverse of add(); the tests check
 * that the two agree on every column).
 */
export function decodeSpendLogs(data: Buffer): SpendLogRow[] {
  const rows: SpendLogRow[] = [];
  let at = SIGNATURE.length + 8; // signature, flags, header extension (empty)
  const field = (): Buffer | null => {
    const n = data.readInt32BE(at);
    at += 4;
    if (n === -1) return null;
    const b = data.subarray(at, at + n);
    at += n;
    return b;
  };
  const text = () => field()?.toString("utf8") ?? null;
  const uuid = () => {
    const b = field();
    if (b === null) return null;
    const hex = b.toString("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  };
  const timestamp = () => {
    const b = field()!;
    return (b.readInt32BE(0) * 4_294_967_296 + b.readUInt32BE(4)) / 1000 + POSTGRES_EPOCH_MS;
  };
  const int = () => {
    const b = field()!;
    return b.length === 2 ? b.readInt16BE(0) : b.readInt32BE(0);
  };
  const float = () => field()?.readDoubleBE(0) ?? null;
  const textArray = () => {
    const b = field()!;
    if (b.readInt32BE(0) === 0) return [];
    const out: string[] = [];
    let o = 20; // dimensions, nulls flag, element type, length, lower bound
    for (let i = b.readInt32BE(12); i > 0; i--) {
      const n = b.readInt32BE(o);
      out.push(b.toString("utf8", o + 4, o + 4 + n));
      o += 4 + n;
    }
    return out;
  };
  while (data.readInt16BE(at) !== -1) {
    at += 2;
    const [key_hash, key_id, key_name, key_alias, team_id, user_id, model, model_id, upstream_model, replica_id] = [
      text(),
      uuid(),
      text(),
      text(),
      text(),
      text(),
      text(),
      text(),
      text(),
      text(),
    ];
    const request_id = uuid()!;
    const start_time = timestamp();
    const end_time = timestamp();
    const client_request_id = text();
    const prompt_tokens = int();
    const completion_tokens = int();
    const total_tokens = int();
    const spend = float()!;
    const latency_ms = float()!;
    const overhead_ms = float();
    const status = int();
    const error_code = text();
    const stream = field()![0] === 1;
    const tags = textArray();
    const metadata = JSON.parse(field()!.toString("utf8", 1)) as Record<string, unknown>;
    rows.push({
      request_id,
      start_time,
      end_time,
      client_request_id,
      key_hash,
      key_id,
      key_name,
      key_alias,
      team_id,
      user_id,
      model: model!,
      model_id,
      upstream_model,
      prompt_tokens,
      completion_tokens,
      total_tokens,
      spend,
      latency_ms,
      overhead_ms,
      status,
      error_code,
      stream,
      replica_id: replica_id!,
      tags,
      metadata,
    });
  }
  return rows;
}
