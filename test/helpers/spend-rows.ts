import { randomUUID } from "node:crypto";
import type { SpendLogRow } from "../../src/store/spend-log-row.js";

/** A spend log row of the master key for `model`, starting at `start` (epoch ms, or ISO text as a journal holds it). */
export function spendLogRow(model: string, start: number | string, fields: Partial<SpendLogRow> = {}): SpendLogRow {
  return {
    request_id: randomUUID(),
    start_time: start,
    end_time: typeof start === "number" ? start + 5 : start,
    client_request_id: null,
    key_hash: null,
    key_id: null,
    key_name: "master-key",
    key_alias: null,
    team_id: null,
    user_id: null,
    model,
    model_id: null,
    upstream_model: "x",
    prompt_tokens: 1,
    completion_tokens: 1,
    total_tokens: 2,
    spend: 0.25,
    latency_ms: 5,
    overhead_ms: 1,
    status: 200,
    error_code: null,
    stream: false,
    replica_id: "writer-test",
    tags: [],
    metadata: {},
    ...fields,
  };
}

/**
 * Every field of a row set, to values an encoder gets wrong first: quotes, tabs, backslashes, commas and braces in
 * text, characters beyond ASCII and beyond U+FFFF, a count near int4's top, a spend that is not a short decimal, a
 * null where most rows have a number, nested metadata.
 */
export const AWKWARD_FIELDS = {
  client_request_id: 'client "id"\t\\ 1',
  key_hash: "ab".repeat(32),
  key_name: "sk-...wxyz",
  key_alias: "alias é ✓",
  team_id: "team\\1",
  user_id: "user,1",
  model_id: "db-model-1",
  upstream_model: "gpt-x",
  prompt_tokens: 2_000_000_000,
  completion_tokens: 7,
  total_tokens: 2_000_000_007,
  spend: 0.1 + 0.2,
  latency_ms: 1234.567,
  overhead_ms: null,
  status: 502,
  error_code: "upstream_error",
  stream: true,
  replica_id: "replica-é",
  tags: ["a", "b c", "ü", "{x}", '"q"', "😀"],
  metadata: { nested: { list: [1, "two", null], ok: true }, text: "ünï\ncode" },
} satisfies Partial<SpendLogRow>;
