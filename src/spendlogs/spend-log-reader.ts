import { z } from "zod";
import { hashKey } from "../auth/key-material.js";
import { BadRequestError } from "../errors/errors.js";
import type { Database } from "../store/database.js";
import type { SpendLogRow } from "../store/spend-log-row.js";
import { dailySpend, findSpendLogs, type SpendGroup } from "../store/spend-log-store.js";

const DAY = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date as YYYY-MM-DD");

/** GET /spend/logs: LiteLLM's filters, plus team_id and key_id; pages of `page_size` rows, newest first. */
export const spendLogsQuerySchema = z
  .object({
    api_key: z.string().min(1).max(512).optional(),
    key_id: z.uuid().optional(),
    user_id: z.string().min(1).max(256).optional(),
    team_id: z.string().min(1).max(256).optional(),
    request_id: z.string().min(1).max(256).optional(),
    start_date: DAY.optional(),
    end_date: DAY.optional(),
    page: z.coerce.number().int().min(1).max(1_000_000).default(1),
    page_size: z.coerce.number().int().min(1).max(1_000).default(100),
  })
  .strict();

/** GET /global/spend/report: daily totals over a date range, grouped (LiteLLM's `api_key` and `customer` too). */
export const spendReportQuerySchema = z
  .object({
    start_date: DAY,
    end_date: DAY,
    group_by: z.enum(["team", "key", "user", "model", "api_key", "customer"]).default("team"),
    api_key: z.string().min(1).max(512).optional(),
    team_id: z.string().min(1).max(256).optional(),
    user_id: z.string().min(1).max(256).optional(),
  })
  .strict();

const GROUP_FIELD: Record<SpendGroup, string> = { team: "teams", key: "keys", user: "users", model: "models" };
const MAX_REPORT_DAYS = 366;

/**
 * The read side of the spend logs, for the admin API (docs/spend-logs.md): raw rows from `gh_spend_logs`, reports
 * from the daily totals (`gh_spend_daily`), never a scan of raw rows for a report.
 */
export class SpendLogReader {
  constructor(private readonly db: Database) {}

  async logs(q: z.infer<typeof spendLogsQuerySchema>) {
    const rows = await this.db.query((db) =>
      findSpendLogs(db, {
        keyHash: q.api_key === undefined ? undefined : tokenHashOf(q.api_key),
        keyId: q.key_id,
        teamId: q.team_id,
        userId: q.user_id,
        requestId: q.request_id,
        start: q.start_date === undefined ? undefined : new Date(`${q.start_date}T00:00:00Z`),
        // end_date is a whole day, as in LiteLLM.
        end: q.end_date === undefined ? undefined : new Date(Date.parse(`${q.end_date}T00:00:00Z`) + 86_400_000),
        limit: q.page_size,
        offset: (q.page - 1) * q.page_size,
      }),
    );
    return rows.map(spendLogView);
  }

  async report(q: z.infer<typeof spendReportQuerySchema>) {
    const group: SpendGroup = q.group_by === "api_key" ? "key" : q.group_by === "customer" ? "user" : q.group_by;
    const days = (Date.parse(q.end_date) - Date.parse(q.start_date)) / 86_400_000;
    if (!(days >= 0)) throw new BadRequestError("end_date must not be before start_date", { code: "invalid_date_range", param: "end_date" });
    if (days > MAX_REPORT_DAYS) throw new BadRequestError(`a report covers at most ${MAX_REPORT_DAYS} days`, { code: "invalid_date_range", param: "end_date" });
    const filter =
      q.api_key !== undefined
        ? { column: "key" as const, value: tokenHashOf(q.api_key) }
        : q.team_id !== undefined
          ? { column: "team" as const, value: q.team_id }
          : q.user_id !== undefined
            ? { column: "user" as const, value: q.user_id }
            : null;
    const rows = await this.db.query((db) => dailySpend(db, group, q.start_date, q.end_date, filter));
    // LiteLLM's shape: one entry per day, each with its groups, each with its spend per model. Per key, a group is
    // a token (LiteLLM's api_key) and also names its key (`key_id`): a key rotated has one group per token, which a
    // reader sums by key_id.
    type Group = { name: string | null; key_id?: string | null; total_spend: number; total_requests: number; total_tokens: number; metadata: unknown[] };
    const byDay = new Map<string, Map<string, Group>>();
    for (const r of rows) {
      let groups = byDay.get(r.day);
      if (!groups) {
        groups = new Map();
        byDay.set(r.day, groups);
      }
      let g = groups.get(r.group);
      if (!g) {
        g = { name: r.group === "" ? null : r.group, ...(group === "key" && { key_id: r.key_id }), total_spend: 0, total_requests: 0, total_tokens: 0, metadata: [] };
        groups.set(r.group, g);
      }
      const tokens = r.prompt_tokens + r.completion_tokens;
      g.total_spend += r.spend;
      g.total_requests += r.requests;
      g.total_tokens += tokens;
      g.metadata.push({ model: r.model, spend: r.spend, requests: r.requests, failed_requests: r.failed_requests, total_tokens: tokens });
    }
    return [...byDay].map(([day, groups]) => ({ group_by_day: day, [GROUP_FIELD[group]]: [...groups.values()] }));
  }
}

/** A key as the client gave it (sk-…), or the hash /key/info shows: the hash either way. */
function tokenHashOf(apiKey: string): string {
  return /^[0-9a-f]{64}$/.test(apiKey) ? apiKey : hashKey(apiKey);
}

/** A row in LiteLLM's SpendLogs field names, with Gatehouse's own fields beside them. */
function spendLogView(r: SpendLogRow) {
  return {
    request_id: r.request_id,
    call_type: "completion",
    api_key: r.key_hash,
    key_id: r.key_id,
    key_name: r.key_name,
    key_alias: r.key_alias,
    spend: r.spend,
    total_tokens: r.total_tokens,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    startTime: r.start_time,
    endTime: r.end_time,
    model: r.model,
    model_group: r.model,
    model_id: r.model_id,
    upstream_model: r.upstream_model,
    user: r.user_id,
    team_id: r.team_id,
    request_tags: r.tags,
    metadata: r.metadata,
    status: r.status >= 400 ? "failure" : "success",
    status_code: r.status,
    error_code: r.error_code,
    stream: r.stream,
    latency_ms: r.latency_ms,
    overhead_ms: r.overhead_ms,
    replica_id: r.replica_id,
    client_request_id: r.client_request_id,
  };
}
