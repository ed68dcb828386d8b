import { isUniqueViolation } from "../store/db.js";
import { withLiveSpend, type LiveSpend } from "./live-spend.js";
import { authRecordFromRow } from "../auth/auth-record.js";
import { generateVirtualKey, hashKey, keyDisplayName, toTokenHash } from "../auth/key-material.js";
import { ConflictError, NotFoundError } from "../errors/errors.js";
import { endGraceOf, findDeprecatedKey, findGraceTokens } from "../store/deprecated-key-store.js";
import {
  deleteKeys,
  findKeyByKeyId,
  findKeysByAliases,
  insertKey,
  listKeys,
  lockKeys,
  nextKeyVersion,
  resolveTokens,
  updateKey,
  type KeyPatch,
  type KeyRow,
} from "../store/key-store.js";
import type { Database } from "../store/database.js";
import { resetSpend } from "../store/spend-store.js";
import { deleteByTokensUnlocked } from "../reinstated-bugs/delete-race.js";
import { reinstated } from "../testing/reinstated-bugs.js";
import { allTokensOf, lockKeyByToken, lockKeysByTokens } from "./key-addressing.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";
import { assertTeamAccepts, assertUserAccepts } from "./key-owners.js";
import { IdempotencyFlow } from "./idempotency-flow.js";
import type { IdempotencyVault } from "./idempotency-vault.js";
import { toKeyPatch } from "./key-patch.js";
import type { GenerateKeyRequest, UpdateKeyRequest } from "./key-schemas.js";
import type { KeyStandings } from "./key-standing.js";
import { keyView } from "./key-view.js";

/**
 * The /key admin operations except rotation (rotation-service.ts). Each validates fully before it
 * writes, writes the change and its invalidation event in one transaction, and updates this replica's
 * caches before answering: a 200 means committed, an error means nothing changed.
 */
export class KeyService {
  private readonly idempotency: IdempotencyFlow;

  constructor(
    private readonly db: Database,
    private readonly events: CommittedEventSink,
    private readonly servedModels: () => ReadonlySet<string>,
    vault: IdempotencyVault,
    private readonly spend: LiveSpend,
    private readonly standings: KeyStandings,
  ) {
    this.idempotency = new IdempotencyFlow(db, vault);
  }

  async generate(req: GenerateKeyRequest, idempotencyKey?: string, log?: ChangeLog) {
    const patch = toKeyPatch(req, this.servedModels());
    try {
      return await this.idempotency.run<GeneratedKey>("generate", idempotencyKey, req, (attempt) => {
        const plaintext = req.key ?? generateVirtualKey();
        const token = hashKey(plaintext);
        return commitChangeWithEvent(
          this.db,
          this.events,
          async (tx) => {
            const replayed = await attempt.replayed(tx);
            if (replayed) return { result: replayed, stale: null };
            if (await findDeprecatedKey(tx, token)) throw new ConflictError("this key already exists", { code: "key_exists", param: "key" });
            if (patch.team_id) await assertTeamAccepts(tx, patch.team_id, patch.models ?? []);
            if (patch.user_id) await assertUserAccepts(tx, patch.user_id, patch.models ?? []);
            const row = await insertKey(tx, { ...patch, token, key_name: keyDisplayName(plaintext) });
            const response = generatedView(plaintext, row);
            await attempt.store(tx, response);
            // The new hash may sit in a cache as a remembered miss.
            return { result: response, stale: { kind: "generate", tokens: [token], version: row.version } };
          },
          log,
        );
      });
    } catch (err) {
      throw mapConflict(err);
    }
  }

  async update(req: UpdateKeyRequest, log?: ChangeLog) {
    const { key, spend, ...fields } = req;
    const patch = toKeyPatch(fields, this.servedModels());
    if (spend !== undefined) patch.spend = spend;
    const updated = await this.applyPatch(toTokenHash(key), patch, "update", log);
    // A new spend starts a new generation; a new max_budget may meet a live ledger nobody kept up to date
    // while the key had no limits. Either way the next request seeds the live ledger from Postgres.
    if (spend !== undefined || fields.max_budget !== undefined) await this.spend.afterReset(updated.key_id, spend !== undefined ? String(updated.spend_generation) : undefined);
    return updated;
  }

  /**
   * POST /key/{key}/reset_spend: the current period's spend becomes `to` (LiteLLM's reset_to), cluster-wide.
   * Spend is not part of any cached auth record, so no invalidation event is needed.
   */
  async resetSpend(key: string, to: number) {
    const token = toTokenHash(key);
    const reset = await this.db.transaction(async (tx) => {
      const target = await lockKeyByToken(tx, token);
      if (!target) throw new NotFoundError("key not found", { code: "key_not_found", param: "key" });
      return resetSpend(tx, target.row.key_id, to);
    });
    await this.spend.afterReset(reset.keyId, reset.generation);
    return { key: token, spend: to, spend_generation: Number(reset.generation) };
  }

  async setBlocked(key: string, blocked: boolean, log?: ChangeLog) {
    return this.applyPatch(toTokenHash(key), { blocked }, blocked ? "block" : "unblock", log);
  }

  /**
   * Ends the grace of every deprecated token of a key now (a leaked old token), leaving the current token
   * alone. Addressed by any token of the key, the deprecated ones included. Answers which tokens stopped.
   */
  async endGrace(key: string, log?: ChangeLog) {
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const target = await lockKeyByToken(tx, toTokenHash(key));
        if (!target) throw new NotFoundError("key not found", { code: "key_not_found", param: "key" });
        const ended = await endGraceOf(tx, target.row.key_id);
        const result = { key_id: target.row.key_id, key_name: target.row.key_name, revoked: ended.map((d) => ({ token: d.token, key_name: d.key_name })) };
        if (ended.length === 0) return { result, stale: null };
        // A fresh version: newer than the active record the deprecated tokens were cached as.
        return { result, stale: { kind: "end_grace", tokens: ended.map((d) => d.token), version: await nextKeyVersion(tx) } };
      },
      log,
    );
  }

  /** A key's info, addressed by any token that authenticates; a deprecated token's answer carries a marker. */
  async info(key: string) {
    const token = toTokenHash(key);
    const [addressed] = await this.db.query((q) => resolveTokens(q, [token]));
    const row = addressed && (await this.db.query((q) => findKeyByKeyId(q, addressed.key_id)));
    if (!addressed || !row) throw new NotFoundError("key not found", { code: "key_not_found", param: "key" });
    // The older tokens still in their grace: the UI's rotation timeline (their windows, never their hashes), each
    // with its standing: a grace token is refused whenever the key is, and once its grace ends.
    const record = authRecordFromRow(row);
    const [graceTokens, standing] = await Promise.all([this.db.query((q) => findGraceTokens(q, row.key_id)), this.standings.of(record)]);
    const grace = await Promise.all(graceTokens.map(async (g) => ({ ...g, ...(await this.standings.of({ ...record, revokeAt: g.revoke_at.getTime() })) })));
    const info = { ...(await this.withLiveSpend(keyView(row))), ...standing, grace_tokens: grace };
    if (addressed.addressed_as === "current") return { key: token, info };
    const deprecated = await this.db.query((q) => findDeprecatedKey(q, token));
    if (!deprecated) throw new NotFoundError("key not found", { code: "key_not_found", param: "key" });
    return { key: token, info: { ...info, deprecated: { key_name: deprecated.key_name, revoke_at: deprecated.revoke_at, active_token: row.token } } };
  }

  async list(query: {
    page: number;
    size: number;
    key_alias?: string | undefined;
    user_id?: string | undefined;
    team_id?: string | undefined;
    search?: string | undefined;
    return_full_object?: string | undefined;
  }) {
    const filter = {
      keyAlias: query.key_alias ?? null,
      userId: query.user_id ?? null,
      teamId: query.team_id ?? null,
      search: query.search ?? null,
      page: query.page,
      size: query.size,
    };
    const { rows, total } = await this.db.query((q) => listKeys(q, filter));
    return {
      keys: query.return_full_object === "true" ? await Promise.all(rows.map((r) => this.fullView(r))) : rows.map((r) => r.token),
      total_count: total,
      current_page: query.page,
      total_pages: Math.ceil(total / query.size),
    };
  }

  /**
   * Deletes all the named keys or none: one unknown key makes the whole request a 404. A key may be named by
   * any token that authenticates; its rows are locked first, so a rotation racing the delete either commits
   * before it (and the key is deleted under its new token) or waits and then finds nothing to rotate.
   */
  async delete(req: { keys?: string[] | undefined; key_aliases?: string[] | undefined }, log?: ChangeLog) {
    if (req.keys && reinstated("delete-race")) return deleteByTokensUnlocked(this.db, this.events, req.keys, log);
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        let rows: KeyRow[];
        if (req.keys) {
          const tokens = [...new Set(req.keys.map(toTokenHash))];
          const { locked, missing } = await lockKeysByTokens(tx, tokens);
          if (missing.length > 0) {
            const names = req.keys.filter((k) => missing.includes(toTokenHash(k))).map((k) => (k.startsWith("sk-") ? keyDisplayName(k) : k));
            throw new NotFoundError(`keys not found: ${names.join(", ")}; nothing was deleted`, { code: "key_not_found", param: "keys" });
          }
          rows = [...new Map(locked.map((l) => [l.row.key_id, l.row])).values()];
        } else {
          const aliases = [...new Set(req.key_aliases!)];
          const named = await findKeysByAliases(tx, aliases);
          rows = (
            await lockKeys(
              tx,
              named.map((r) => r.key_id),
            )
          ).filter((r) => r.key_alias !== null && aliases.includes(r.key_alias));
          if (rows.length !== aliases.length) {
            const found = new Set(rows.map((r) => r.key_alias));
            const missing = aliases.filter((a) => !found.has(a));
            throw new NotFoundError(`key aliases not found: ${missing.join(", ")}; nothing was deleted`, { code: "key_not_found", param: "key_aliases" });
          }
        }
        // Deprecated keys go with their key (ON DELETE CASCADE); their cached records must go too.
        const tokens = await allTokensOf(tx, rows);
        const deleted = await deleteKeys(
          tx,
          rows.map((r) => r.key_id),
        );
        const version = deleted.reduce((max, r) => Math.max(max, Number(r.tombstone_version)), 0);
        return { result: { deleted_keys: req.keys ?? req.key_aliases ?? [] }, stale: { kind: "delete", tokens, version } };
      },
      log,
    );
  }

  /** A key as the list shows it in full: its live spend, and whether its current token is refused now. */
  private async fullView(row: KeyRow) {
    const [view, standing] = await Promise.all([this.withLiveSpend(keyView(row)), this.standings.of(authRecordFromRow(row))]);
    return { ...view, ...standing };
  }

  /** `spend` as the live ledger has it (settled requests not yet flushed to Postgres included). */
  private withLiveSpend<V extends { key_id: string; spend: number }>(view: V): Promise<V & { durable_spend: number }> {
    return withLiveSpend(view, view.key_id, this.spend);
  }

  /** Applies a patch to the key any token of it names; the answer names the key by the token given. */
  private async applyPatch(token: string, patch: KeyPatch, kind: "update" | "block" | "unblock", log?: ChangeLog) {
    try {
      return await commitChangeWithEvent(
        this.db,
        this.events,
        async (tx) => {
          const target = await lockKeyByToken(tx, token);
          if (!target) throw new NotFoundError("key not found", { code: "key_not_found", param: "key" });
          const teamId = patch.team_id !== undefined ? patch.team_id : target.row.team_id;
          if (teamId && (patch.team_id !== undefined || patch.models !== undefined)) await assertTeamAccepts(tx, teamId, patch.models ?? target.row.models);
          const userId = patch.user_id !== undefined ? patch.user_id : target.row.user_id;
          if (userId && (patch.user_id !== undefined || patch.models !== undefined)) await assertUserAccepts(tx, userId, patch.models ?? target.row.models);
          const row = (await updateKey(tx, target.row.key_id, patch))!;
          // Old keys inside their grace are cached as this key's record: they change with it.
          const tokens = await allTokensOf(tx, [row]);
          return { result: { key: token, ...keyView(row) }, stale: { kind, tokens, version: row.version } };
        },
        log,
      );
    } catch (err) {
      throw mapConflict(err);
    }
  }
}

type GeneratedKey = ReturnType<typeof generatedView>;

/** The answer to /key/generate: the key as /key/info shows it, and the new plaintext key. */
export function generatedView(plaintext: string, row: KeyRow) {
  return { key: plaintext, ...keyView(row) };
}

export function mapConflict(err: unknown): unknown {
  if (isUniqueViolation(err, "gh_keys_key_alias_idx")) return new ConflictError("a key with this key_alias already exists", { code: "key_alias_exists", param: "key_alias" });
  if (isUniqueViolation(err, "gh_keys_pkey")) return new ConflictError("this key already exists", { code: "key_exists", param: "key" });
  return err;
}
