import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodeSpendLogs, SpendLogBatch } from "../src/store/spend-log-copy.js";
import type { SpendLogRow } from "../src/store/spend-log-row.js";
import { AWKWARD_FIELDS } from "./helpers/spend-rows.js";

/**
 * A spend log batch, without Postgres: rows encoded as they arrive read back exactly as given, and the batch's
 * daily sums are those of its rows. (test/spend-logs.test.ts writes batches into Postgres and reads every column.)
 */
const DAY_MS = 86_400_000;

function row(fields: Partial<SpendLogRow> = {}): SpendLogRow {
  return {
    request_id: randomUUID(),
    start_time: Date.UTC(2031, 4, 6, 23, 59, 59, 123),
    end_time: Date.UTC(2031, 4, 6, 23, 59, 59, 130),
    client_request_id: null,
    key_hash: "a".repeat(64),
    key_id: randomUUID(),
    key_name: "sk-...wxyz",
    key_alias: null,
    team_id: null,
    user_id: null,
    model: "m",
    model_id: null,
    upstream_model: "u",
    prompt_tokens: 3,
    completion_tokens: 4,
    total_tokens: 7,
    spend: 0.5,
    latency_ms: 7.25,
    overhead_ms: 1.5,
    status: 200,
    error_code: null,
    stream: false,
    replica_id: "r1",
    tags: [],
    metadata: {},
    ...fields,
  };
}

describe("spend log batch", () => {
  it("reads every row back as it was given, whatever its fields hold", () => {
    const key = row();
    const rows = [
      key,
      // The same key, every other field set awkwardly (and no deployment).
      row({ ...AWKWARD_FIELDS, key_hash: key.key_hash, key_id: key.key_id, upstream_model: null }),
      row({ key_hash: null, key_id: null, key_name: "master-key", start_time: Date.UTC(2000, 0, 1), end_time: Date.UTC(1999, 11, 31, 23, 59, 59, 999) }),
      { ...key, request_id: randomUUID() },
    ];
    const batch = SpendLogBatch.of(rows);
    expect(batch.rows).toBe(4);
    expect(batch.rowsBack()).toEqual(rows);
    expect(decodeSpendLogs(batch.copyData())).toEqual(rows);
  });

  it("takes times as ISO text too (a journal of an older version) and gives them back as epoch milliseconds", () => {
    const at = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
    const [back] = SpendLogBatch.of([row({ start_time: new Date(at).toISOString(), end_time: new Date(at + 9).toISOString() })]).rowsBack();
    expect([back!.start_time, back!.end_time]).toEqual([at, at + 9]);
  });

  it("sums its rows per day, key, team, user and model, in byte order of the texts, each with its token's key", () => {
    const day = Date.UTC(2031, 4, 6);
    const [smiley, last] = [randomUUID(), randomUUID()];
    const rows = [
      row({ start_time: day + 1, key_hash: "\u{1F600}", key_id: smiley, status: 500, spend: 1 }),
      // Another deployment of the same model, by the same key: another shared prefix, the same daily row.
      row({ start_time: day + 2, key_hash: "\u{1F600}", key_id: smiley, upstream_model: "other", spend: 2 }),
      row({ start_time: day + 3, key_hash: "\uFFFF", key_id: last, team_id: "t", user_id: "u", spend: 4 }),
      row({ start_time: day + DAY_MS, key_hash: "\uFFFF", key_id: last, team_id: "t", user_id: "u", spend: 8, prompt_tokens: 10 }),
      row({ start_time: day - 1, key_hash: null, key_id: null, model: "z", spend: 16 }),
    ];
    const totals = SpendLogBatch.of(rows).dailyTotals();
    const d = day / DAY_MS;
    // "\uFFFF" is EF BF BF in UTF-8, before the emoji's F0 9F 98 80 (though after it in UTF-16: JavaScript's order).
    expect(totals).toEqual([
      { day: d - 1, key_hash: "", key_id: null, team_id: "", user_id: "", model: "z", requests: 1, failed_requests: 0, prompt_tokens: 3, completion_tokens: 4, spend: 16 },
      { day: d, key_hash: "\uFFFF", key_id: last, team_id: "t", user_id: "u", model: "m", requests: 1, failed_requests: 0, prompt_tokens: 3, completion_tokens: 4, spend: 4 },
      { day: d, key_hash: "\u{1F600}", key_id: smiley, team_id: "", user_id: "", model: "m", requests: 2, failed_requests: 1, prompt_tokens: 6, completion_tokens: 8, spend: 3 },
      { day: d + 1, key_hash: "\uFFFF", key_id: last, team_id: "t", user_id: "u", model: "m", requests: 1, failed_requests: 0, prompt_tokens: 10, completion_tokens: 4, spend: 8 },
    ]);
  });

  it("writes a uuid given in capitals as the same uuid", () => {
    const batch = new SpendLogBatch();
    const id = randomUUID();
    batch.add(row({ request_id: id.toUpperCase() }));
    expect(batch.rowsBack()[0]!.request_id).toBe(id);
  });

  it("refuses a value no column can hold as Postgres would (class 22), and is left as it was", () => {
    const batch = new SpendLogBatch();
    const good = [row(), row()];
    batch.add(good[0]!);
    for (const bad of [
      { request_id: "not-a-uuid" },
      { key_id: "zz" },
      // The uuid's text form is its canonical one only: 8-4-4-4-12 hex digits.
      { request_id: "0123456789abcdef0123456789abcdef0123" },
      { request_id: "0123456-789ab-cdef-0123-456789abcdef" },
      { request_id: "01234567-89ab-cdef-0123-456789abcdeg" },
      { request_id: "01234567-89ab-cdef-0123-456789abcdé0" },
      { request_id: "{01234567-89ab-cdef-0123-456789abcde}" },
      { start_time: "not a time" },
      { start_time: 1e17 }, // beyond 64-bit microseconds
      { end_time: Number.NaN },
      { prompt_tokens: 1.5 },
      { completion_tokens: 2 ** 31 },
      { status: 40_000 },
      { spend: Number.POSITIVE_INFINITY },
      // A new key whose shared fields cannot be encoded, twice: the second must not take the first good row's.
      { key_hash: "another key", key_id: "not-a-uuid" },
      { key_hash: "another key", key_id: "not-a-uuid" },
    ]) {
      let code: string | undefined;
      try {
        batch.add(row(bad as Partial<SpendLogRow>));
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      expect(code, JSON.stringify(bad)).toMatch(/^22/);
    }
    batch.add(good[1]!);
    expect(batch.rows).toBe(2);
    expect(batch.rowsBack()).toEqual(good);
    expect(batch.dailyTotals().map((t) => t.requests)).toEqual([2]);
    // Once its data is taken, a batch takes no more rows (they would be missing from what was sent).
    expect(() => batch.add(row())).toThrow(/no rows once ended/);
  });
});
