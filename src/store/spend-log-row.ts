/**
 * One row of `gh_spend_logs` (sql/0010_spend_logs.sql), as the request path makes it, the journal keeps it and the
 * /spend routes read it back. Its own module because both ways into the table need it: store/spend-log-store.ts
 * (the JSON batch, the reads) and store/spend-log-copy.ts (the binary COPY), and the store imports the COPY, so the
 * row cannot live in either without the two importing each other.
 */
export interface SpendLogRow {
  request_id: string;
  /**
   * Epoch milliseconds as built by the request path (formatting a date costs more than the rest of the row); ISO
   * text in a journal written by an older version, or in a row read back from Postgres.
   */
  start_time: number | string;
  end_time: number | string;
  client_request_id: string | null;
  key_hash: string | null;
  key_id: string | null;
  key_name: string | null;
  key_alias: string | null;
  team_id: string | null;
  user_id: string | null;
  model: string;
  model_id: string | null;
  upstream_model: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  spend: number;
  latency_ms: number;
  overhead_ms: number | null;
  status: number;
  error_code: string | null;
  stream: boolean;
  replica_id: string;
  tags: string[];
  metadata: Record<string, unknown>;
}

/** What a daily total of `gh_spend_daily` sums: the batch's (spend-log-copy.ts) and a report's (spend-log-store.ts). */
export interface DailySums {
  requests: number;
  failed_requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  spend: number;
}
