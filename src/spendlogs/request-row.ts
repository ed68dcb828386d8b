import type { AuthRecord } from "../auth/auth-record.js";
import { litellmModelOf } from "../config/models.js";
import type { ModelDeployment } from "../config/settings.js";
import type { TokenCount } from "../limits/pricing.js";
import type { SpendLogRow } from "../store/spend-log-row.js";

/**
 * What a request on the model APIs leaves for its spend log row once it is over: answered, refused by a limit, or
 * failed (docs/spend-logs.md). The HTTP layer (http/api-routes.ts) records it and hands it over; the row is made here.
 */
export interface FinishedRequest {
  /** The request id its answer carried: the client's `x-request-id` when it sent a sane one, else ours. */
  readonly requestId: string;
  /** The client's `x-request-id` header, as it came. */
  readonly clientRequestId: string | string[] | undefined;
  /** Epoch ms of its start. */
  readonly startedWall: number;
  /** performance.now() at its start and when its response closed. */
  readonly startedAt: number;
  readonly endedAt: number;
  /** Authenticated (a request without is not logged). */
  readonly auth: { readonly record: AuthRecord } | undefined;
  /** The model it asked for (a request that named none is not logged). */
  readonly model: string | undefined;
  /** The deployment that served it, if one did. */
  readonly deployment: ModelDeployment | undefined;
  readonly stream: boolean;
  readonly usage: TokenCount | undefined;
  readonly cost: number;
  /** The gateway's own seconds, for an answer that came from the upstream (http/access-log.ts RequestRecord). */
  readonly ownSeconds: number | undefined;
  /** The attempts that failed before the one that answered (retries, fallbacks). */
  readonly attempts: ReadonlyArray<{ deployment: string; failure: string }>;
  /** The request body's `metadata`, as sent. */
  readonly requestMetadata: unknown;
  /** The answer's HTTP status. */
  readonly status: number;
  readonly errorCode: string | undefined;
  /** The whole answer was written (false: the client left before its end). */
  readonly answered: boolean;
}

// The record the master key authenticates as (http/auth-middleware.ts): its rows name no key.
const MASTER_KEY_TOKEN = "master";
const MAX_TAGS = 32;
const MAX_METADATA_BYTES = 4_096;
// Most requests send no metadata: their rows share one frozen pair instead of each allocating two empty objects.
const NO_TAGS_OR_METADATA = Object.freeze({ tags: Object.freeze([]) as unknown as string[], metadata: Object.freeze({}) as Record<string, unknown> });

/**
 * The spend log row of a finished request (store/spend-log-store.ts, sql/0010). `newRequestId` makes the row's own
 * id when the client chose the request's (http/request-id.ts).
 */
export function spendLogRow(x: FinishedRequest, replicaId: string, newRequestId: (startedWall: number) => string): SpendLogRow {
  const latencyMs = x.endedAt - x.startedAt;
  const record = x.auth!.record;
  const isMaster = record.token === MASTER_KEY_TOKEN;
  const usage = x.usage;
  const { tags: requestTags, metadata: requestMetadata } = tagsAndMetadata(x.requestMetadata);
  // The key's tags first (LiteLLM adds a key's tags to each request's), then the request's own.
  const tags = record.tags ? [...record.tags, ...requestTags.filter((t) => !record.tags!.includes(t))] : requestTags;
  // The attempts that failed before the one that answered (retries, fallbacks), each deployment and its failure.
  const metadata = x.attempts.length === 0 ? requestMetadata : { ...requestMetadata, gatehouse_attempts: x.attempts };
  // The request id the answer carries, unless the client chose it (then it is kept beside ours: not unique).
  const clientId = x.clientRequestId;
  const fromClient = typeof clientId === "string" && clientId === x.requestId;
  return {
    // Made from the request's start: a lookup by request id finds the row by the time its id carries.
    request_id: fromClient ? newRequestId(x.startedWall) : x.requestId,
    // Epoch milliseconds: formatting two dates here cost more than the rest of the row.
    start_time: x.startedWall,
    end_time: x.startedWall + Math.round(latencyMs),
    client_request_id: fromClient ? clientId : null,
    key_hash: isMaster ? null : record.token,
    key_id: isMaster ? null : record.keyId,
    key_name: record.keyName,
    key_alias: record.keyAlias,
    team_id: record.teamId,
    user_id: record.userId,
    model: x.model!,
    model_id: x.deployment?.modelId ?? null,
    // The deployment that served it, provider included, as LiteLLM names it ("anthropic/claude-sonnet-4-5").
    upstream_model: x.deployment ? litellmModelOf(x.deployment) : null,
    prompt_tokens: usage?.promptTokens ?? 0,
    completion_tokens: usage?.completionTokens ?? 0,
    total_tokens: (usage?.promptTokens ?? 0) + (usage?.completionTokens ?? 0),
    spend: x.cost,
    latency_ms: Math.round(latencyMs * 1000) / 1000,
    overhead_ms: x.ownSeconds === undefined ? null : Math.round(x.ownSeconds * 1_000_000) / 1000,
    status: x.status,
    error_code: x.errorCode ?? (x.answered ? null : "client_gone"),
    stream: x.stream,
    replica_id: replicaId,
    tags,
    metadata,
  };
}

/**
 * LiteLLM's request tags (`metadata.tags`) and the rest of the request's metadata, bounded. Text Postgres cannot
 * store (NUL, a lone surrogate) is left out: one such row would make its whole batch refused.
 */
function tagsAndMetadata(value: unknown): { tags: string[]; metadata: Record<string, unknown> } {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return NO_TAGS_OR_METADATA;
  const { tags: raw, ...rest } = value as Record<string, unknown>;
  const tags = Array.isArray(raw) ? raw.filter((t): t is string => typeof t === "string" && t.length > 0 && t.length <= 128 && !unstorableText(t)).slice(0, MAX_TAGS) : [];
  const json = JSON.stringify(rest);
  if (json.length > MAX_METADATA_BYTES) return { tags, metadata: { truncated: true } };
  // JSON.stringify writes NUL as \u0000 and a lone surrogate as \udXXX: either in the text means the metadata is not storable.
  return { tags, metadata: UNSTORABLE_JSON.test(json) ? { unstorable: true } : rest };
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const unstorableText = (t: string) => t.includes("\u0000") || LONE_SURROGATE.test(t);
const UNSTORABLE_JSON = /\\u0000|\\ud[89a-f][0-9a-f]{2}/i;
