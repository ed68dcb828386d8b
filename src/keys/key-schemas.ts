import { z } from "zod";
import { DurationError, parseBudgetDuration, parseKeyDuration, type DurationUnit } from "../config/duration.js";
import { CUSTOM_KEY_PATTERN, CUSTOM_KEY_RULE } from "../auth/key-material.js";
import { KEY_FIELDS, refusedNames } from "../config/litellm-fields.js";

/**
 * Request bodies of the /key admin routes, LiteLLM's field names. Every field is either honoured or refused with a
 * 400 that names it: an unknown field (a typo must not silently do nothing), and a LiteLLM field Gatehouse does not
 * support (`notSupported`: a script that sets it must not believe it took effect). docs/litellm-migration.md has
 * the table of every LiteLLM field.
 *
 * Text that Postgres cannot store (a NUL character) and metadata nested deeper than `MAX_METADATA_DEPTH` are
 * refused here, with a 400 naming the field, before anything is written (docs/security.md).
 */

/**
 * LiteLLM fields Gatehouse does not support, as schema fields: a value that asks for nothing — absent, null, false,
 * "", [], {}, or LiteLLM's own default for key_type ("default") — is accepted, since clients send those
 * unprompted; anything else is a 400 naming the field, never accepted and ignored.
 */
export function notSupported(names: readonly string[]): Record<string, z.ZodType> {
  const field = (name: string) =>
    z.unknown().superRefine((value, ctx) => {
      if (asksForNothing(name, value)) return;
      ctx.addIssue({ code: "custom", message: "is a LiteLLM field Gatehouse does not support (docs/litellm-migration.md); leave it out" });
    });
  return Object.fromEntries(names.map((name) => [name, field(name).optional()]));
}

function asksForNothing(name: string, value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === "") return true;
  // LiteLLM's clients send its default key_type unprompted.
  if (name === "key_type" && value === "default") return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === "object" && Object.keys(value).length === 0;
}

/** A key duration: above zero and at most 100 years (parseKeyDuration); any other value is a 400 naming the field. */
export function durationField(units: readonly DurationUnit[]) {
  return z.string().superRefine((value, ctx) => {
    try {
      parseKeyDuration(value, units);
    } catch (err) {
      if (!(err instanceof DurationError)) throw err;
      ctx.addIssue({ code: "custom", message: err.message });
    }
  });
}

/** A budget period: LiteLLM's spellings (parseBudgetDuration), any other value a 400 naming the field. */
export function budgetDurationField() {
  return z.string().superRefine((value, ctx) => {
    try {
      parseBudgetDuration(value);
    } catch (err) {
      if (!(err instanceof DurationError)) throw err;
      ctx.addIssue({ code: "custom", message: err.message });
    }
  });
}

export const LIMIT = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** Text Postgres can store: `text` and `jsonb` refuse the NUL character. */
export function text(max = 256) {
  return z
    .string()
    .min(1)
    .max(max)
    .refine((v) => !v.includes("\u0000"), "must not contain the NUL character (\\u0000)");
}
export const ID = text();

// Deep enough for any real metadata; shallow enough that nothing walking it (the request fingerprint, jsonb)
// can run out of stack.
export const MAX_METADATA_DEPTH = 32;
const MAX_METADATA_BYTES = 64 * 1024;

/** Where `value` breaks the metadata rules, or null: depth, NUL characters in keys or strings. Iterative. */
function metadataProblem(value: unknown): string | null {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 1 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (typeof v === "string") {
      if (v.includes("\u0000")) return "must not contain the NUL character (\\u0000)";
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (depth > MAX_METADATA_DEPTH) return `is nested deeper than ${MAX_METADATA_DEPTH} levels`;
    for (const [k, child] of Object.entries(v)) {
      if (k.includes("\u0000")) return "must not contain the NUL character (\\u0000)";
      stack.push({ v: child, depth: depth + 1 });
    }
  }
  return null;
}

export const metadata = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  const problem = metadataProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
  else if (JSON.stringify(value).length > MAX_METADATA_BYTES) ctx.addIssue({ code: "custom", message: `is larger than ${MAX_METADATA_BYTES} bytes` });
});

/** The budget and limit fields keys, teams and users share (key-patch.ts turns them into columns: toLimitPatch). */
export const limitFields = {
  models: z.array(text()).max(1_000).optional(),
  max_budget: z.number().finite().nonnegative().nullable().optional(),
  budget_duration: budgetDurationField().nullable().optional(),
  tpm_limit: LIMIT.nullable().optional(),
  rpm_limit: LIMIT.nullable().optional(),
  max_parallel_requests: LIMIT.max(2_147_483_647).nullable().optional(),
  metadata: metadata.nullable().optional(),
};

const keyFields = {
  key_alias: text().nullable().optional(),
  ...limitFields,
  user_id: ID.nullable().optional(),
  team_id: ID.nullable().optional(),
  duration: durationField(["s", "m", "h", "d"]).nullable().optional(),
  blocked: z.boolean().optional(),
  // Honoured (docs/keys.md, "LiteLLM's per-key fields").
  tags: z.array(text(128)).max(64).nullable().optional(),
  aliases: z.record(text(), text()).nullable().optional(),
  enforced_params: z.array(text(128)).max(64).nullable().optional(),
  soft_budget: z.number().finite().nonnegative().nullable().optional(),
  model_max_budget: z
    .record(
      text(),
      z.union([z.number().finite().nonnegative(), z.strictObject({ budget_limit: z.number().finite().nonnegative(), time_period: budgetDurationField().nullable().optional() })]),
    )
    .nullable()
    .optional(),
  model_rpm_limit: z.record(text(), LIMIT).nullable().optional(),
  model_tpm_limit: z.record(text(), LIMIT).nullable().optional(),
  ...notSupported(refusedNames(KEY_FIELDS)),
};

export const generateKeySchema = z
  .object({
    ...keyFields,
    key: z.string().regex(CUSTOM_KEY_PATTERN, CUSTOM_KEY_RULE).optional(),
  })
  .strict();

export const updateKeySchema = z
  .object({
    ...keyFields,
    key: z.string().min(1),
    spend: z.number().finite().nonnegative().optional(),
  })
  .strict();

export const regenerateKeySchema = z
  .object({
    ...keyFields,
    key: z.string().min(1).optional(),
    grace_period: z.string().optional(),
    new_key: z.string().regex(CUSTOM_KEY_PATTERN, CUSTOM_KEY_RULE).optional(),
  })
  .strict();

export const resetSpendSchema = z.object({ reset_to: z.number().finite().nonnegative().default(0) }).strict();

export const keyRefSchema = z.object({ key: z.string().min(1) }).strict();

export const deleteKeysSchema = z
  .object({
    keys: z.array(z.string().min(1)).min(1).max(1_000).optional(),
    key_aliases: z.array(text()).min(1).max(1_000).optional(),
  })
  .strict()
  .refine((b) => (b.keys === undefined) !== (b.key_aliases === undefined), { message: 'give exactly one of "keys" or "key_aliases"' });

export const listKeysQuerySchema = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  size: z.coerce.number().int().min(1).max(100).default(10),
  key_alias: text().optional(),
  user_id: text().optional(),
  team_id: text().optional(),
  // Gatehouse's own: an alias prefix, or exactly a key id, user id or team id (the admin UI's search box).
  search: text().optional(),
  return_full_object: z.enum(["true", "false"]).optional(),
});

export type GenerateKeyRequest = z.infer<typeof generateKeySchema>;
export type RegenerateKeyRequest = z.infer<typeof regenerateKeySchema>;
/** The fields every write route shares (generate, update, regenerate). */
export type KeyFields = Omit<GenerateKeyRequest, "key">;
export type UpdateKeyRequest = z.infer<typeof updateKeySchema>;
