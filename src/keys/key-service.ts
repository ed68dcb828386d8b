import type pg from "pg";
import { parseDuration } from "../config/duration.js";
import { generateVirtualKey, hashKey, keyDisplayName, toTokenHash } from "../auth/key-material.js";
import { ALL_PROXY_MODELS } from "../auth/auth-record.js";
import { BadRequestError, ConflictError, NotFoundError } from "../http/errors.js";
import { withTransaction } from "../store/db.js";
import {
  deleteKeys,
  findKeyByToken,
  findKeysByAliases,
  findKeysByTokens,
  insertKey,
  isUniqueViolation,
  listKeys,
  updateKey,
  type KeyPatch,
  type KeyRow,
} from "../store/key-store.js";
import type { GenerateKeyRequest, UpdateKeyRequest } from "./key-schemas.js";
import { keyView } from "./key-view.js";

/** A committed change to some token hashes; the version is what L2 tombstones are written with. */
export interface KeyChange {
  kind: "generate" | "update" | "delete" | "block" | "unblock";
  tokens: Array<{ token: string; version: number }>;
}

/** Told about every committed change, after COMMIT. Today: evict this replica's caches. */
export interface KeyChangeSink {
  committed(change: KeyChange): Promise<void>;
}

/**
 * The /key admin operations. Each one validates fully before it writes, writes in one transaction,
 * and only then tells the caches: a 200 means committed, an error means nothing changed.
 */
export class KeyService {
  constructor(
    private readonly pool: pg.Pool,
    private readonly changes: KeyChangeSink,
    private readonly servedModels: () => ReadonlySet<string>,
  ) {}

  async generate(req: GenerateKeyRequest) {
    const patch = this.toPatch(req);
    const plaintext = req.key ?? generateVirtualKey();
    const token = hashKey(plaintext);
    let row: KeyRow;
    try {
      row = await withTransaction(this.pool, (tx) => insertKey(tx, { ...patch, token, key_name: keyDisplayName(plaintext) }));
    } catch (err) {
      throw this.mapConflict(err);
    }
    // The new hash may sit in a cache as a remembered miss.
    await this.changes.committed({ kind: "generate", tokens: [{ token, version: row.version }] });
    return { key: plaintext, ...keyView(row) };
  }

  async update(req: UpdateKeyRequest) {
    const { key, ...fields } = req;
    const patch = this.toPatch(fields);
    if (req.spend !== undefined) patch.spend = req.spend;
    return this.applyPatch(toTokenHash(key), patch, "update");
  }

  async setBlocked(key: string, blocked: boolean) {
    return this.applyPatch(toTokenHash(key), { blocked }, blocked ? "block" : "unblock");
  }

  async info(key: string) {
    const token = toTokenHash(key);
    const row = await findKeyByToken(this.pool, token);
    if (!row) throw new NotFoundError("key not found", "key", "key_not_found");
    return { key: token, info: keyView(row) };
  }

  async list(query: { page: number; size: number; key_alias?: string | undefined; user_id?: string | undefined; team_id?: string | undefined; return_full_object?: string | undefined }) {
    const { rows, total } = await listKeys(this.pool, {
      keyAlias: query.key_alias ?? null,
      userId: query.user_id ?? null,
      teamId: query.team_id ?? null,
      page: query.page,
      size: query.size,
    });
    return {
      keys: query.return_full_object === "true" ? rows.map(keyView) : rows.map((r) => r.token),
      total_count: total,
      current_page: query.page,
      total_pages: Math.ceil(total / query.size),
    };
  }

  /** Deletes all the named keys or none: one unknown key makes the whole request a 404. */
  async delete(req: { keys?: string[] | undefined; key_aliases?: string[] | undefined }) {
    const deleted = await withTransaction(this.pool, async (tx) => {
      let rows: KeyRow[];
      if (req.keys) {
        const tokens = [...new Set(req.keys.map(toTokenHash))];
        rows = await findKeysByTokens(tx, tokens);
        if (rows.length !== tokens.length) {
          const found = new Set(rows.map((r) => r.token));
          const missing = req.keys.filter((k) => !found.has(toTokenHash(k))).map((k) => (k.startsWith("sk-") ? keyDisplayName(k) : k));
          throw new NotFoundError(`keys not found: ${missing.join(", ")}; nothing was deleted`, "keys", "key_not_found");
        }
      } else {
        const aliases = [...new Set(req.key_aliases!)];
        rows = await findKeysByAliases(tx, aliases);
        if (rows.length !== aliases.length) {
          const found = new Set(rows.map((r) => r.key_alias));
          const missing = aliases.filter((a) => !found.has(a));
          throw new NotFoundError(`key aliases not found: ${missing.join(", ")}; nothing was deleted`, "key_aliases", "key_not_found");
        }
      }
      return deleteKeys(tx, rows.map((r) => r.token));
    });
    await this.changes.committed({ kind: "delete", tokens: deleted.map((r) => ({ token: r.token, version: r.tombstone_version })) });
    return { deleted_keys: req.keys ?? req.key_aliases ?? [] };
  }

  private async applyPatch(token: string, patch: KeyPatch, kind: KeyChange["kind"]) {
    let row: KeyRow | null;
    try {
      row = await withTransaction(this.pool, (tx) => updateKey(tx, token, patch));
    } catch (err) {
      throw this.mapConflict(err);
    }
    if (!row) throw new NotFoundError("key not found", "key", "key_not_found");
    await this.changes.committed({ kind, tokens: [{ token, version: row.version }] });
    return { key: token, ...keyView(row) };
  }

  /** Request fields → column patch. Durations become database-clock timestamps in the statement. */
  private toPatch(req: Omit<UpdateKeyRequest, "key" | "spend"> | GenerateKeyRequest): KeyPatch {
    const patch: KeyPatch = {};
    if (req.models !== undefined) {
      const served = this.servedModels();
      const unknown = req.models.filter((m) => m !== ALL_PROXY_MODELS && !served.has(m));
      if (unknown.length > 0) throw new BadRequestError(`unknown model(s): ${unknown.join(", ")}; this gateway serves ${[...served].join(", ") || "no models"}`, "models", "model_not_found");
      patch.models = req.models;
    }
    if (req.key_alias !== undefined) patch.key_alias = req.key_alias;
    if (req.max_budget !== undefined) patch.max_budget = req.max_budget;
    if (req.budget_duration !== undefined) {
      patch.budget_duration = req.budget_duration;
      patch.budget_duration_ms = req.budget_duration === null ? null : parseDuration(req.budget_duration);
    }
    if (req.tpm_limit !== undefined) patch.tpm_limit = req.tpm_limit;
    if (req.rpm_limit !== undefined) patch.rpm_limit = req.rpm_limit;
    if (req.max_parallel_requests !== undefined) patch.max_parallel_requests = req.max_parallel_requests;
    if (req.metadata !== undefined) patch.metadata = req.metadata ?? {};
    if (req.user_id !== undefined) patch.user_id = req.user_id;
    if (req.team_id !== undefined) patch.team_id = req.team_id;
    if (req.duration !== undefined) patch.expires_in_ms = req.duration === null ? null : parseDuration(req.duration);
    if (req.blocked !== undefined) patch.blocked = req.blocked;
    return patch;
  }

  private mapConflict(err: unknown): unknown {
    if (isUniqueViolation(err, "gh_keys_key_alias_idx")) return new ConflictError("a key with this key_alias already exists", "key_alias_exists", "key_alias");
    if (isUniqueViolation(err, "gh_keys_pkey")) return new ConflictError("this key already exists", "key_exists", "key");
    return err;
  }
}
