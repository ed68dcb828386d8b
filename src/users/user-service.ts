import { randomUUID } from "node:crypto";
import { userCacheKey } from "../auth/auth-record.js";
import { generateVirtualKey, hashKey, keyDisplayName } from "../auth/key-material.js";
import { ConflictError, NotFoundError } from "../errors/errors.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";
import { toLimitPatch } from "../keys/key-patch.js";
import { withLiveSpend, type LiveSpend } from "../keys/live-spend.js";
import { keyView } from "../keys/key-view.js";
import { ledgerOf } from "../limits/admission.js";
import type { Database } from "../store/database.js";
import { insertKey, listKeys, lockKeysOf } from "../store/key-store.js";
import { deleteUsers, findUser, insertUser, listUsers, lockUsers, updateUser, type UserPatch, type UserRow } from "../store/user-store.js";
import type { NewUserRequest, UpdateUserRequest } from "./user-schemas.js";

/**
 * The /user operations (LiteLLM's API). A user's record is cached on its own; every change to it — its creation
 * included, since a replica may have cached "no such user" for a key naming it — commits one event naming
 * `user:<user_id>`, whatever the number of the user's keys (docs/users.md).
 */
export class UserService {
  constructor(
    private readonly db: Database,
    private readonly events: CommittedEventSink,
    private readonly servedModels: () => ReadonlySet<string>,
    private readonly spend: LiveSpend,
  ) {}

  /** Creates a user and, unless `auto_create_key: false` (LiteLLM's default is a key), a key of theirs, in one transaction. */
  async create(req: NewUserRequest, log?: ChangeLog) {
    const { user_id: given, auto_create_key: withKey, ...fields } = req;
    const userId = given ?? randomUUID();
    const patch = this.toPatch(fields);
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const row = await insertUser(tx, userId, patch);
        if (!row) throw new ConflictError(`the user_id '${userId}' is taken (by a user, or by a deleted one: ids are never reused)`, { code: "user_exists", param: "user_id" });
        const stale = [userCacheKey(userId)];
        let key: ({ key: string } & ReturnType<typeof keyView>) | undefined;
        if (withKey) {
          const plaintext = generateVirtualKey();
          const keyRow = await insertKey(tx, { token: hashKey(plaintext), key_name: keyDisplayName(plaintext), user_id: userId });
          stale.push(keyRow.token);
          key = { key: plaintext, ...keyView(keyRow) };
        }
        // One event: the user's record (a replica may hold "no such user") and, with it, the new key's token.
        return {
          result: { ...userView(row), ...(key ? { key: key.key, token: key.token, key_name: key.key_name } : {}) },
          stale: { kind: "user_new", tokens: stale, version: row.version },
        };
      },
      log,
    );
  }

  async update(req: UpdateUserRequest, log?: ChangeLog) {
    const { user_id: userId, ...fields } = req;
    const patch = this.toPatch(fields);
    const result = await commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const [locked] = await lockUsers(tx, [userId]);
        if (!locked) throw new NotFoundError(`user '${userId}' not found`, { code: "user_not_found", param: "user_id" });
        const row = (await updateUser(tx, userId, patch))!;
        return { result: userView(row), stale: { kind: "user_update", tokens: [userCacheKey(userId)], version: row.version } };
      },
      log,
    );
    // A user who had no limits kept no live ledger up to date: a new budget starts from Postgres's spend.
    if (fields.max_budget !== undefined) await this.spend.afterReset(ledgerOf("user", userId));
    return result;
  }

  /** Deletes users and their keys; each user's id is never reused. One event per user, none per key. */
  async delete(userIds: string[], log?: ChangeLog) {
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        await lockKeysOf(tx, "user", userIds);
        const locked = await lockUsers(tx, userIds);
        const missing = userIds.filter((id) => !locked.some((u) => u.user_id === id));
        if (missing.length > 0) throw new NotFoundError(`user(s) not found: ${missing.join(", ")}`, { code: "user_not_found", param: "user_ids" });
        const { users, keyTokens } = await deleteUsers(tx, userIds);
        const version = Math.max(...users.map((u) => u.version));
        return { result: { deleted_users: userIds, deleted_keys: keyTokens.length }, stale: { kind: "user_delete", tokens: users.map((u) => userCacheKey(u.user_id)), version } };
      },
      log,
    );
  }

  async info(userId: string) {
    const row = await this.db.query((q) => findUser(q, userId));
    if (!row || row.deleted_at) throw new NotFoundError(`user '${userId}' not found`, { code: "user_not_found", param: "user_id" });
    const keys = await this.db.query((q) => listKeys(q, { keyAlias: null, userId, teamId: null, page: 1, size: 100 }));
    return {
      user_id: row.user_id,
      user_info: await withLiveSpend(userView(row), ledgerOf("user", userId), this.spend),
      keys: keys.rows.map(keyView),
      key_count: Number(keys.total),
    };
  }

  async list(page: { page: number; page_size: number }) {
    const { rows, total } = await this.db.query((q) => listUsers(q, { limit: page.page_size, offset: (page.page - 1) * page.page_size }));
    return { users: rows.map(userView), total, page: page.page, page_size: page.page_size, total_pages: Math.ceil(total / page.page_size) };
  }

  private toPatch(req: Omit<UpdateUserRequest, "user_id">): UserPatch {
    const patch: UserPatch = toLimitPatch(req, this.servedModels());
    if (req.user_email !== undefined) patch.user_email = req.user_email;
    if (req.user_alias !== undefined) patch.user_alias = req.user_alias;
    if (req.user_role !== undefined) patch.user_role = req.user_role;
    return patch;
  }
}

/** The LiteLLM-shaped JSON of a user. */
export function userView(row: UserRow) {
  return {
    user_id: row.user_id,
    user_email: row.user_email,
    user_alias: row.user_alias,
    user_role: row.user_role,
    models: row.models,
    max_budget: row.max_budget,
    spend: row.spend,
    budget_duration: row.budget_duration,
    budget_reset_at: row.budget_reset_at,
    tpm_limit: row.tpm_limit,
    rpm_limit: row.rpm_limit,
    max_parallel_requests: row.max_parallel_requests,
    metadata: row.metadata,
    created_at: row.created_at,
    updated_at: row.updated_at,
    version: row.version,
  };
}
