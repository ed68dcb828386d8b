import { createHash, randomUUID } from "node:crypto";
import { teamCacheKey, userCacheKey } from "../auth/auth-record.js";
import { z } from "zod";
import { unreadPrices } from "../config/models.js";
import { litellmParamsSchema } from "../config/schema.js";
import type { CredentialSeal } from "../models/credential-seal.js";
import { PUBLIC_API_BASES } from "../config/models.js";
import { deploymentOf, type ApiLitellmParams } from "../models/model-params.js";
import { MODELS_CACHE_KEY } from "../models/model-registry.js";
import { isUuid, type Queryable } from "../store/db.js";
import { appendEvent } from "../store/event-store.js";
import { nextKeyVersion } from "../store/key-store.js";
import {
  insertImportedKeys,
  insertImportedModel,
  insertImportedTeams,
  insertImportedUsers,
  missingLiteLLMTables,
  readLiteLLM,
  readLiteLLMModels,
} from "../store/litellm-import-store.js";
import { DurationError, parseBudgetDuration } from "../config/duration.js";
import { openLiteLLMSecret } from "./litellm-secrets.js";

export interface ImportReport {
  teams: { read: number; imported: number };
  users: { read: number; imported: number };
  keys: { read: number; imported: number; skipped: number };
  models: { read: number; imported: number; skipped: Array<{ model_name: string; reason: string }>; droppedFields: string[] };
  events: number;
}

export interface ModelImport {
  /** LiteLLM's `LITELLM_SALT_KEY` (its master key when it had none): opens the models' sealed params. */
  litellmSaltKey: string | undefined;
  /** Seals the imported upstream keys as /model/new does (credentials.salt_key). */
  seal: CredentialSeal;
}

// A replica may have cached "no such key" (or team, or user) for what is imported: every imported record is named
// in an event, this many to an event, so replicas forget those misses; a NOTIFY carries at most 60 names, a
// replica reads longer events from the table.
const NAMES_PER_EVENT = 1_000;

/**
 * `gatehouse import-litellm --from <LiteLLM database URL>`: teams, then users, then keys, then database models, in
 * one transaction of Gatehouse's database (all or nothing), with the events that make running replicas see them at
 * once. Keys keep their hashes (LiteLLM's and Gatehouse's are both sha256 hex), so clients keep their keys. Models
 * are opened with LiteLLM's salt key and sealed again with Gatehouse's; without LiteLLM's key they are skipped
 * (docs/litellm-migration.md).
 */
export async function importLiteLLM(source: Queryable, target: { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> }, models: ModelImport): Promise<ImportReport> {
  const missing = await missingLiteLLMTables(source);
  if (missing.length > 0)
    throw new NotALiteLLMDatabase(
      `--from is not a LiteLLM proxy's database: it has no ${missing.map((t) => `"${t}"`).join(", ")} table${missing.length > 1 ? "s" : ""} (give the DATABASE_URL LiteLLM's proxy ran with)`,
    );
  const data = await readLiteLLM(source);
  data.keys = data.keys.map(withLiteLLMKeyFields);
  const modelRows = await readLiteLLMModels(source);
  const prepared = prepareModels(modelRows, models);
  return target.transaction(async (tx) => {
    const teams = await insertImportedTeams(tx, data.teams);
    const users = await insertImportedUsers(tx, data.users);
    const keys = await insertImportedKeys(tx, data.keys);
    let modelsImported = 0;
    for (const m of prepared.ready) if (await insertImportedModel(tx, m)) modelsImported++;
    const names = [...teams.map(teamCacheKey), ...users.map(userCacheKey), ...keys];
    let events = 0;
    for (let i = 0; i < names.length; i += NAMES_PER_EVENT) {
      await appendEvent(tx, "import", names.slice(i, i + NAMES_PER_EVENT), await nextKeyVersion(tx), randomUUID());
      events++;
    }
    // Every replica reads its database models again (one event for all of them, as for a /model change).
    if (modelsImported > 0) {
      await appendEvent(tx, "model_change", [MODELS_CACHE_KEY], await nextKeyVersion(tx), randomUUID());
      events++;
    }
    return {
      teams: { read: data.teams.length, imported: teams.length },
      users: { read: data.users.length, imported: users.length },
      keys: { read: data.keys.length, imported: keys.length, skipped: data.keys.length - keys.length },
      models: { read: modelRows.length, imported: modelsImported, skipped: prepared.skipped, droppedFields: [...prepared.dropped].sort() },
      events,
    };
  });
}

/**
 * Opens and checks each LiteLLM model before anything is written: its params by the rules of /model/new (a
 * model Gatehouse could not serve is skipped, with the reason), fields Gatehouse does not use dropped and named.
 * LiteLLM's model id is kept when it is a UUID (else one is derived from it), so a second import finds it.
 */
function prepareModels(rows: Awaited<ReturnType<typeof readLiteLLMModels>>, o: ModelImport) {
  const ready: Array<{ model_id: string; model_name: string; params: object; api_key_sealed: string | null; model_info: object }> = [];
  const skipped: Array<{ model_name: string; reason: string }> = [];
  const dropped = new Set<string>();
  for (const row of rows) {
    const sealedParams = parseJsonObject(row.litellm_params);
    if (!sealedParams) {
      skipped.push({ model_name: row.model_name, reason: "litellm_params is not an object" });
      continue;
    }
    if (o.litellmSaltKey === undefined) {
      skipped.push({ model_name: row.model_name, reason: "its params are sealed with LiteLLM's salt key: give --litellm-salt-key" });
      continue;
    }
    const opened: Record<string, unknown> = {};
    let unopened: string | undefined;
    for (const [field, value] of Object.entries(sealedParams)) {
      if (typeof value !== "string") opened[field] = value;
      else {
        const plain = openLiteLLMSecret(value, o.litellmSaltKey);
        if (plain === null) unopened ??= field;
        else opened[field] = plain;
      }
    }
    if (unopened !== undefined) {
      skipped.push({ model_name: row.model_name, reason: `${unopened} does not open with the salt key given` });
      continue;
    }
    // LiteLLM stores numbers sealed as strings: every numeric field (prices, timeout, rpm, tpm, weight…) is a number again.
    for (const field of NUMERIC_PARAMS) {
      if (typeof opened[field] === "string" && opened[field] !== "" && Number.isFinite(Number(opened[field]))) opened[field] = Number(opened[field]);
    }
    // A price Gatehouse would not read (LiteLLM's per-second prices, prices in model_info) would leave it served free.
    const unread = unreadPrices(opened, parseJsonObject(row.model_info));
    if (unread.length > 0) {
      skipped.push({ model_name: row.model_name, reason: unread.map((u) => `${u.field}: ${u.message}`).join("; ") });
      continue;
    }
    const parsed = importedParamsSchema.safeParse(opened);
    if (!parsed.success) {
      skipped.push({ model_name: row.model_name, reason: parsed.error.issues.map((i) => `${i.path.join(".") || "litellm_params"}: ${i.message}`).join("; ") });
      continue;
    }
    for (const field of Object.keys(opened)) if (!(field in parsed.data)) dropped.add(field);
    const { api_key: apiKey, ...params } = parsed.data as ApiLitellmParams & { api_key?: string };
    try {
      deploymentOf(row.model_name, parsed.data as ApiLitellmParams, apiKey, PUBLIC_API_BASES); // only checks it can be served
    } catch (err) {
      skipped.push({ model_name: row.model_name, reason: (err as Error).message });
      continue;
    }
    ready.push({
      model_id: isUuid(row.model_id) ? row.model_id : uuidFrom(row.model_id),
      model_name: row.model_name,
      params,
      api_key_sealed: apiKey ? o.seal.seal(apiKey) : null,
      model_info: parseJsonObject(row.model_info) ?? {},
    });
  }
  return { ready, skipped, dropped };
}

// The fields Gatehouse uses, checked as in the config file; anything else LiteLLM kept is dropped (and named).
const importedParamsSchema = z.object(litellmParamsSchema.shape);
// Read off the schema, so a numeric field Gatehouse starts to read (rpm, tpm, weight, order came with routing) is not
// refused as "expected number, received string".
const NUMERIC_PARAMS = Object.entries(litellmParamsSchema.shape)
  .filter(([, schema]) => schema instanceof z.ZodOptional && schema.unwrap() instanceof z.ZodNumber)
  .map(([field]) => field);

/** A stable UUID for a LiteLLM model id that is not one. */
function uuidFrom(id: string): string {
  const h = createHash("sha256").update(`litellm-model:${id}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function parseJsonObject(value: unknown): Record<string, unknown> | null {
  const v = typeof value === "string" ? safeJson(value) : value;
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The source database is not a LiteLLM proxy's: said in one line, nothing read or written. */
export class NotALiteLLMDatabase extends Error {}

/**
 * LiteLLM's per-key fields as Gatehouse keeps them (docs/keys.md): `aliases` and `model_max_budget` are columns of
 * LiteLLM's key table; `tags`, `enforced_params`, `model_rpm_limit` and `model_tpm_limit` it keeps in the key's
 * metadata. Entries of the wrong shape (a budget with a period Gatehouse cannot read) are left out.
 */
function withLiteLLMKeyFields(row: Record<string, unknown>): Record<string, unknown> {
  const metadata = objectOf(row.metadata);
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string" && x.length > 0) : []);
  const numbers = (v: unknown) => Object.fromEntries(Object.entries(objectOf(v)).filter(([, n]) => typeof n === "number" && Number.isInteger(n) && n >= 0));
  const budgets: Record<string, { budget_limit: number; time_period: string | null }> = {};
  for (const [model, b] of Object.entries(objectOf(row.model_max_budget))) {
    const limit = typeof b === "number" ? b : Number(objectOf(b).budget_limit ?? objectOf(b).max_budget);
    const period = typeof b === "object" && b !== null ? (objectOf(b).time_period ?? objectOf(b).budget_duration ?? null) : null;
    if (!Number.isFinite(limit) || limit < 0) continue;
    if (period !== null) {
      try {
        parseBudgetDuration(period);
      } catch (err) {
        if (err instanceof DurationError) continue;
        throw err;
      }
    }
    budgets[model] = { budget_limit: limit, time_period: period === null ? null : String(period) };
  }
  return {
    ...row,
    tags: strings(metadata.tags),
    aliases: Object.fromEntries(Object.entries(objectOf(row.aliases)).filter(([, to]) => typeof to === "string")),
    enforced_params: strings(metadata.enforced_params),
    model_max_budget: budgets,
    model_rpm_limit: numbers(metadata.model_rpm_limit),
    model_tpm_limit: numbers(metadata.model_tpm_limit),
  };
}

function objectOf(v: unknown): Record<string, unknown> {
  if (typeof v === "string") {
    try {
      return objectOf(JSON.parse(v));
    } catch {
      return {};
    }
  }
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
