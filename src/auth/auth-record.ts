import type { AuthColumns, AuthRow } from "../store/key-store.js";

/**
 * What the request path needs to know about a key: the cached copy of a `gh_keys` row, without the
 * fields only admin routes read (metadata, spend), so an L1 entry stays small (≤ 1 KiB).
 * Validity (`expiresAt`, `blocked`) is data checked on every request, never a cache TTL (docs/coherence.md #2).
 */
export interface AuthRecord {
  token: string;
  keyId: string;
  keyName: string;
  keyAlias: string | null;
  models: string[];
  userId: string | null;
  teamId: string | null;
  expiresAt: number | null;
  blocked: boolean;
  maxBudget: number | null;
  tpmLimit: number | null;
  rpmLimit: number | null;
  maxParallelRequests: number | null;
  version: number;
  /** For a deprecated key: when it stops working (ms since the epoch). Null for the active key. */
  revokeAt: number | null;
}

/**
 * A row as the request path sees it. For a deprecated key the record is the active key's (same models,
 * limits and ledger, docs/coherence.md #1) plus its own revoke_at and display name.
 */
export function authRecordFromRow(row: AuthColumns | AuthRow): AuthRecord {
  const deprecated = "revoke_at" in row && row.revoke_at !== null ? row : null;
  return {
    token: row.token,
    keyId: row.key_id,
    keyName: deprecated?.deprecated_key_name ?? row.key_name,
    keyAlias: row.key_alias,
    models: row.models,
    userId: row.user_id,
    teamId: row.team_id,
    expiresAt: row.expires ? row.expires.getTime() : null,
    blocked: row.blocked,
    maxBudget: row.max_budget,
    tpmLimit: row.tpm_limit,
    rpmLimit: row.rpm_limit,
    maxParallelRequests: row.max_parallel_requests,
    version: row.version,
    revokeAt: deprecated ? deprecated.revoke_at!.getTime() : null,
  };
}

/** LiteLLM's marker for "every model the proxy serves". */
export const ALL_PROXY_MODELS = "all-proxy-models";

export function keyAllowsModel(record: Pick<AuthRecord, "models">, model: string): boolean {
  return record.models.length === 0 || record.models.includes(model) || record.models.includes(ALL_PROXY_MODELS);
}
