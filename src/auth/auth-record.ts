import type { AuthColumns, AuthRow } from "../store/key-store.js";
import type { TeamAuthRow } from "../store/team-store.js";
import type { UserAuthRow } from "../store/user-store.js";

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
  // LiteLLM's per-key fields, absent when unset (most keys: the record stays small; records cached before they existed
  // read the same).
  /** Model names this key's clients may ask for → the served model each stands for. */
  aliases?: Record<string, string>;
  /** Request parameters every request of this key must carry (dotted paths: `metadata.project`). */
  enforcedParams?: string[];
  /** Per served model: its budget (and period) and rate limits for this key. */
  modelLimits?: Record<string, ModelLimit>;
  /** The key's tags, copied into the spend log row of each of its requests. */
  tags?: string[];
}

/** A key's limits on one model (model_max_budget, model_rpm_limit, model_tpm_limit). */
export interface ModelLimit {
  maxBudget: number | null;
  /** The budget's period (`30d`, `1mo`), null for a budget that never resets. */
  budgetPeriod: string | null;
  rpmLimit: number | null;
  tpmLimit: number | null;
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
    ...litellmFields(row),
  };
}

function litellmFields(row: AuthColumns): Pick<AuthRecord, "aliases" | "enforcedParams" | "modelLimits" | "tags"> {
  const out: Pick<AuthRecord, "aliases" | "enforcedParams" | "modelLimits" | "tags"> = {};
  if (row.tags && row.tags.length > 0) out.tags = row.tags;
  if (row.aliases && Object.keys(row.aliases).length > 0) out.aliases = row.aliases;
  if (row.enforced_params && row.enforced_params.length > 0) out.enforcedParams = row.enforced_params;
  const models = new Set([...Object.keys(row.model_max_budget ?? {}), ...Object.keys(row.model_rpm_limit ?? {}), ...Object.keys(row.model_tpm_limit ?? {})]);
  if (models.size > 0) {
    out.modelLimits = {};
    for (const m of models) {
      const budget = row.model_max_budget?.[m];
      out.modelLimits[m] = {
        maxBudget: budget?.budget_limit ?? null,
        budgetPeriod: budget?.time_period ?? null,
        rpmLimit: row.model_rpm_limit?.[m] ?? null,
        tpmLimit: row.model_tpm_limit?.[m] ?? null,
      };
    }
  }
  return out;
}

/** LiteLLM's marker for "every model the proxy serves". */
export const ALL_PROXY_MODELS = "all-proxy-models";

export function keyAllowsModel(record: Pick<AuthRecord, "models">, model: string): boolean {
  return record.models.length === 0 || record.models.includes(model) || record.models.includes(ALL_PROXY_MODELS);
}

/**
 * What the request path needs to know about a team: cached on its own (L1/L2 under `teamCacheKey`), versioned
 * and invalidated by the team's own events, and combined with the key's record on every request. A team change
 * is one event, whatever the number of its keys: no replica walks a team's keys.
 */
export interface TeamRecord {
  kind: "team";
  teamId: string;
  teamAlias: string | null;
  models: string[];
  blocked: boolean;
  /** Deleted teams keep their row (and their id), so a key cached before the delete is refused, never revived. */
  deleted: boolean;
  maxBudget: number | null;
  tpmLimit: number | null;
  rpmLimit: number | null;
  maxParallelRequests: number | null;
  /** user_id → the member's budget inside the team (`max_budget_in_team`), for members that have one. */
  memberBudgets: Record<string, number>;
  version: number;
}

/** A member's budget inside its team, or null. Own properties only: a user_id is client-chosen text. */
export function memberBudget(team: TeamRecord, userId: string): number | null {
  const budgets = team.memberBudgets;
  return budgets !== undefined && Object.hasOwn(budgets, userId) ? (budgets[userId] ?? null) : null;
}

/**
 * What the request path needs to know about a user, cached and invalidated on its own like a team's
 * (`userCacheKey`). A key may name a user that has no row: then there is no record and no user rule applies.
 */
export interface UserRecord {
  kind: "user";
  userId: string;
  models: string[];
  deleted: boolean;
  maxBudget: number | null;
  tpmLimit: number | null;
  rpmLimit: number | null;
  maxParallelRequests: number | null;
  version: number;
}

/** Anything the auth caches hold: a key's record (by token hash), a team's (`team:<id>`) or a user's (`user:<id>`). */
export type CachedRecord = AuthRecord | TeamRecord | UserRecord;

export function userCacheKey(userId: string): string {
  return `user:${userId}`;
}

export function userRecordFromRow(row: UserAuthRow): UserRecord {
  return {
    kind: "user",
    userId: row.user_id,
    models: row.models,
    deleted: row.deleted,
    maxBudget: row.max_budget,
    tpmLimit: row.tpm_limit,
    rpmLimit: row.rpm_limit,
    maxParallelRequests: row.max_parallel_requests,
    version: row.version,
  };
}

/** The cache key of a team's record: never a token hash (64 hex digits), so the two cannot collide. */
export function teamCacheKey(teamId: string): string {
  return `team:${teamId}`;
}

export function isTeamRecord(record: CachedRecord): record is TeamRecord {
  return (record as TeamRecord).kind === "team";
}

export function teamRecordFromRow(row: TeamAuthRow): TeamRecord {
  return {
    kind: "team",
    teamId: row.team_id,
    teamAlias: row.team_alias,
    models: row.models,
    blocked: row.blocked,
    deleted: row.deleted,
    maxBudget: row.max_budget,
    tpmLimit: row.tpm_limit,
    rpmLimit: row.rpm_limit,
    maxParallelRequests: row.max_parallel_requests,
    memberBudgets: row.member_budgets ?? {},
    version: row.version,
  };
}

/**
 * May this caller use `model`? The key, its team and its user must each allow it: a key with models of its own is
 * narrowed by its team's and its user's lists; a key with none inherits theirs (LiteLLM's rule). An empty list
 * allows every model.
 */
export function callerAllowsModel(
  key: Pick<AuthRecord, "models">,
  team: Pick<TeamRecord, "models"> | null,
  model: string,
  user: Pick<UserRecord, "models"> | null = null,
): boolean {
  return keyAllowsModel(key, model) && (team === null || keyAllowsModel(team, model)) && (user === null || keyAllowsModel(user, model));
}
