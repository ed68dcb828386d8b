import type { SpendLogRow } from "./spend-log-store.js";

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
const HEX = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = HEX[65 + i] = 10 + i;

/** A growing buffer with the field writers COPY needs; each writes the field's length, then its value. */
class FieldWriter {
  buf: Buffer;
  at = 0;

  constructor(sizeOrBuffer: number | Buffer) {
    // Never from Node's shared pool: the memory is handed on whole (recycleCopyData).
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
    this.buf.writeInt16BE(v, this.at);
    this.at += 2;
  }

  int32(v: number): void {
    this.room(4);
    this.buf.writeInt32BE(v, this.at);
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
    this.buf.writeInt32BE(n, this.at);
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
    this.room(20);
    const buf = this.buf;
    buf.writeInt32BE(16, this.at);
    let o = this.at + 4;
    for (let i = 0; i < 36; i++) {
      const hi = s.charCodeAt(i);
      if (hi === 45 && (i === 8 || i === 13 || i === 18 || i === 23)) continue;
      const lo = s.charCodeAt(++i);
      if (!isHex(hi) || !isHex(lo)) throw dataError("22P02", `not a uuid: ${s}`);
      buf[o++] = (HEX[hi]! << 4) | HEX[lo]!;
    }
    if (o !== this.at + 20) throw dataError("22P02", `not a uuid: ${s}`);
    this.at += 20;
  }

  /** timestamptz: microseconds since 2000-01-01 UTC, as a 64-bit integer (written as two 32-bit halves). */
  timestamp(ms: number): void {
    this.room(12);
    const us = Math.round((ms - POSTGRES_EPOCH_MS) * 1000);
    const high = Math.floor(us / 4_294_967_296);
    this.buf.writeInt32BE(8, this.at);
    this.buf.writeInt32BE(high, this.at + 4);
    this.buf.writeUInt32BE(us - high * 4_294_967_296, this.at + 8);
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
    this.buf.writeInt32BE(size, this.at);
    if (size === 4) this.buf.writeInt32BE(v!, this.at + 4);
    else this.buf.writeInt16BE(v!, this.at + 4);
    this.at += 4 + size;
  }

  float8(v: number | null): void {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.missing(v);
      return;
    }
    this.room(12);
    this.buf.writeInt32BE(8, this.at);
    this.buf.writeDoubleBE(v, this.at + 4);
    this.at += 12;
  }

  bool(v: boolean): void {
    this.room(5);
    this.buf.writeInt32BE(1, this.at);
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
    this.buf.writeInt32BE(this.at - start - 4, start);
  }

  jsonb(value: Record<string, unknown> | null | undefined): void {
    if (!value || isEmpty(value)) {
      this.bytes(EMPTY_JSONB);
      return;
    }
    const json = JSON.stringify(value);
    const n = Buffer.byteLength(json);
    this.room(5 + n);
    this.buf.writeInt32BE(n + 1, this.at);
    this.buf[this.at + 4] = 1; // jsonb's binary format version
    this.buf.write(json, this.at + 5);
    this.at += 5 + n;
  }
}

const isHex = (c: number) => c < 128 && (HEX[c] !== 0 || c === 48);

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

const sameShared = (a: SpendLogRow, b: SpendLogRow) => SHARED_COLUMNS.every((f) => a[f] === b[f]);

/**
 * A lookup of what `make` made once for each distinct set of shared fields in a batch. Rows of one busy key follow
 * each other: most rows share the previous row's fields, and need no lookup at all.
 */
export function perSharedFields<T>(make: (row: SpendLogRow) => T): (row: SpendLogRow) => T {
  const made = new Map<string, T>();
  let previous: SpendLogRow | undefined;
  let previousMade: T;
  return (row) => {
    if (previous === undefined || !sameShared(row, previous)) {
      // Exact by construction (a JSON array of the values): no two different tuples share a key, nulls included.
      const id = JSON.stringify(SHARED_COLUMNS.map((f) => row[f]));
      let m = made.get(id);
      if (m === undefined) {
        m = make(row);
        made.set(id, m);
      }
      previousMade = m;
    }
    previous = row;
    return previousMade;
  };
}

// The memory a batch is encoded into, kept from one batch to the next: a third of a megabyte allocated outside
// the JS heap for every batch makes V8 start its garbage collections sooner (it counts such memory too).
let spare: Buffer | null = null;

/**
 * The COPY data for `rows`: signature, header, one tuple per row, trailer. Give it back with recycleCopyData()
 * once Postgres has taken it, for the next batch to be encoded into; not given back (a failed COPY, whose bytes
 * may still be queued on the socket), it is left to the garbage collector.
 */
export function spendLogsCopyData(rows: readonly SpendLogRow[]): Buffer {
  const out = new FieldWriter(spare !== null && spare.length >= rows.length * 320 ? spare : rows.length * 320 + 64);
  spare = null;
  out.bytes(SIGNATURE);
  out.int32(0); // flags
  out.int32(0); // header extension length
  // The shared fields of a (key, team, user, model, deployment, replica) are encoded once and copied per row.
  const sharedOf = perSharedFields((row) => {
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
    return Buffer.from(w.buf.subarray(0, w.at));
  });
  for (const row of rows) {
    out.int16(COLUMN_COUNT);
    out.bytes(sharedOf(row));
    out.uuid(row.request_id);
    out.timestamp(epochMs(row.start_time));
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
  }
  out.int16(-1);
  return out.buf.subarray(0, out.at);
}

/** `data` (from spendLogsCopyData) is no longer used: its memory may hold the next batch. */
export function recycleCopyData(data: Buffer): void {
  spare = Buffer.from(data.buffer);
}
