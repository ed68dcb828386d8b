import { z } from "zod";
import { gatehouseSettingsSchema } from "./schema.js";

/**
 * Environment variables for every setting, derived from the schema rather than listed by hand: a setting
 * under `gatehouse_settings` is `GATEHOUSE_<SECTION>_<FIELD>` in upper case (`auth.l1_max_entries` →
 * `GATEHOUSE_AUTH_L1_MAX_ENTRIES`), so a new setting has its variable the day it is added. Values are written
 * into the config before it is validated, so the schema that checks the file checks the environment too.
 */

/**
 * Names older than the rule, kept because deployments use them. Each is read before the derived name, so
 * where both are set the older one wins, as it always has.
 */
const ALIASES: Record<string, readonly string[]> = {
  port: ["PORT"],
  database_url: ["DATABASE_URL"],
  database_listen_url: ["DATABASE_LISTEN_URL"],
  redis_url: ["REDIS_URL"],
  redis_sentinels: ["REDIS_SENTINELS"],
  redis_sentinel_name: ["REDIS_SENTINEL_NAME"],
  redis_sentinel_password: ["REDIS_SENTINEL_PASSWORD"],
  "rotation.default_grace_period": ["GATEHOUSE_DEFAULT_GRACE_PERIOD"],
  "rotation.max_grace_period": ["GATEHOUSE_MAX_GRACE_PERIOD"],
  "shutdown.drain_timeout_ms": ["GATEHOUSE_DRAIN_TIMEOUT_MS"],
  // The name LiteLLM's users know (LITELLM_SALT_KEY), in Gatehouse's namespace.
  "credentials.salt_key": ["GATEHOUSE_SALT_KEY"],
};

/** An empty variable means "unset", except here: an empty Redis prefix is a real choice. */
const EMPTY_IS_A_VALUE = new Set(["redis_prefix"]);

/** Settings outside `gatehouse_settings` that have a variable too (LiteLLM's sections have no rule of their own). */
const OUTSIDE_GATEHOUSE_SETTINGS: ReadonlyArray<{ path: string[]; env: string }> = [{ path: ["general_settings", "master_key"], env: "GATEHOUSE_MASTER_KEY" }];

/** One leaf of `gatehouse_settings`: its path and the environment variables that override it. */
export interface SettingLeaf {
  /** Under `gatehouse_settings`, e.g. ["auth", "l1_max_entries"]. */
  path: string[];
  /** The name the rule gives it. */
  env: string;
  /** Older names that also work, read before `env`. */
  aliases: readonly string[];
  kind: "number" | "string" | "enum" | "duration";
  /** As written in a config file; undefined where "unset" has a meaning of its own (e.g. no database_url: embedded). */
  default: unknown;
}

let leaves: SettingLeaf[] | undefined;

/** Every setting under `gatehouse_settings`, read off the schema itself. */
export function settingLeaves(): SettingLeaf[] {
  leaves ??= collectLeaves(gatehouseSettingsSchema, []);
  return leaves;
}

function collectLeaves(schema: z.ZodType, path: string[]): SettingLeaf[] {
  let node: z.ZodType = schema;
  let fallback: unknown;
  // Peel the wrappers the schema uses: defaults (whose value is recorded), optional, and pipes. A pipe that
  // starts with a transform is a preprocess (its schema is the second half); any other pipe is a value and the
  // transform that reads it (its schema is the first half). A string read by a transform is a duration.
  for (;;) {
    if (node instanceof z.ZodDefault || node instanceof z.ZodPrefault) {
      fallback ??= node._zod.def.defaultValue;
      node = node.unwrap() as z.ZodType;
    } else if (node instanceof z.ZodOptional) {
      node = node.unwrap() as z.ZodType;
    } else if (node instanceof z.ZodPipe) {
      if (node.in instanceof z.ZodTransform) node = node.out as z.ZodType;
      else if (node.in instanceof z.ZodString && node.out instanceof z.ZodTransform) return [leaf(path, "duration", fallback)];
      else node = node.in as z.ZodType;
    } else break;
  }
  if (node instanceof z.ZodObject) return Object.entries(node.shape as Record<string, z.ZodType>).flatMap(([name, field]) => collectLeaves(field, [...path, name]));
  return [leaf(path, node instanceof z.ZodNumber ? "number" : node instanceof z.ZodEnum ? "enum" : "string", fallback)];
}

function leaf(path: string[], kind: SettingLeaf["kind"], fallback: unknown): SettingLeaf {
  return { path, env: `GATEHOUSE_${path.join("_").toUpperCase()}`, aliases: ALIASES[path.join(".")] ?? [], kind, default: fallback };
}

/** Every variable that sets a config field, older names included. */
export function settingVariables(): string[] {
  return [...settingLeaves().flatMap((l) => [...l.aliases, l.env]), ...OUTSIDE_GATEHOUSE_SETTINGS.map((o) => o.env)];
}

/**
 * The environment wins over the file: writes each variable that is set into a copy of the raw config, and
 * returns which variable set which field (by dotted path), so a problem with it names the variable.
 */
export function applyEnvironment(raw: unknown, env: NodeJS.ProcessEnv): { raw: unknown; fromEnv: Map<string, string> } {
  const fromEnv = new Map<string, string>();
  // A file that is not a mapping fails validation as it is; the environment has nothing to add to it.
  if (!isMapping(raw)) return { raw, fromEnv };
  const copy = structuredClone(raw);
  const set = (path: string[], name: string, value: unknown) => {
    let node = copy;
    for (const key of path.slice(0, -1)) {
      node[key] ??= {};
      const next = node[key];
      // Not a mapping in the file: that is the file's error to report, and the variable has nowhere to go.
      if (!isMapping(next)) return;
      node = next;
    }
    node[path.at(-1)!] = value;
    fromEnv.set(path.join("."), name);
  };
  for (const l of settingLeaves()) {
    const allowEmpty = EMPTY_IS_A_VALUE.has(l.path.join("."));
    const name = [...l.aliases, l.env].find((n) => env[n] !== undefined && (allowEmpty || env[n] !== ""));
    if (name) set(["gatehouse_settings", ...l.path], name, l.kind === "number" ? toNumber(env[name]!) : env[name]);
  }
  for (const o of OUTSIDE_GATEHOUSE_SETTINGS) if (env[o.env]) set(o.path, o.env, env[o.env]);
  return { raw: copy, fromEnv };
}

/** "42" → 42; anything else stays text, so the schema refuses it as "expected number" and names the variable. */
function toNumber(text: string): number | string {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : text;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
