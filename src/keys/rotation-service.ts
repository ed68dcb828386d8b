import { DurationError, parseDuration } from "../config/duration.js";
import { generateVirtualKey, hashKey, keyDisplayName, toTokenHash } from "../auth/key-material.js";
import { BadRequestError, ConflictError, NotFoundError } from "../errors/errors.js";
import type { RotationLock } from "../redis/rotation-lock.js";
import { findDeprecatedKey, insertDeprecatedKey, repointDeprecatedKeys, startGraceNow } from "../store/deprecated-key-store.js";
import { rotateKeyToken } from "../store/key-store.js";
import { lockRotationAdvisory } from "../store/rotation-advisory-lock.js";
import type { Database } from "../store/database.js";
import { lockKeyByToken } from "./key-addressing.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";
import { assertTeamAccepts, assertUserAccepts } from "./key-owners.js";
import { IdempotencyFlow } from "./idempotency-flow.js";
import type { IdempotencyVault } from "./idempotency-vault.js";
import { mapConflict } from "./key-service.js";
import { toKeyPatch } from "./key-patch.js";
import type { RegenerateKeyRequest } from "./key-schemas.js";
import { keyView } from "./key-view.js";

export interface RotationSettings {
  /** Grace used when a request names none; 0 = the old key stops at once. */
  defaultGraceMs: number;
  maxGraceMs: number;
}

export type RegenerateResponse = ReturnType<typeof regeneratedView>;

/**
 * `POST /key/{key}/regenerate`: replaces a key's token with a new one, keeping the old one valid for a
 * grace period (docs/coherence.md #1–#4).
 *
 * Everything is checked before anything is written. Then, under the rotation lock, one transaction swaps
 * the token on the same row (conditional on the version read: the fencing token), writes the deprecated
 * row for the old token, re-points older deprecated tokens at the new one, stores the Idempotency-Key
 * result and appends the invalidation event. A 200 means all of that committed.
 */
export class RotationService {
  private readonly idempotency: IdempotencyFlow;

  constructor(
    private readonly db: Database,
    private readonly events: CommittedEventSink,
    private readonly lock: RotationLock,
    vault: IdempotencyVault,
    private readonly servedModels: () => ReadonlySet<string>,
    private readonly settings: RotationSettings,
  ) {
    this.idempotency = new IdempotencyFlow(db, vault);
  }

  async regenerate(keyRef: string, req: RegenerateKeyRequest, idempotencyKey?: string, log?: ChangeLog): Promise<RegenerateResponse> {
    if (req.key !== undefined && toTokenHash(req.key) !== toTokenHash(keyRef)) throw new BadRequestError("the key in the path and the key in the body differ", { param: "key" });
    const graceMs = this.parseGrace(req.grace_period);
    const { key: _key, grace_period: _grace, new_key: newKey, ...fields } = req;
    const patch = toKeyPatch(fields, this.servedModels());
    const oldToken = toTokenHash(keyRef);
    try {
      return await this.idempotency.run<RegenerateResponse>("regenerate", idempotencyKey, { oldToken, req }, (attempt) => {
        const newPlaintext = newKey ?? generateVirtualKey();
        const newToken = hashKey(newPlaintext);
        if (newToken === oldToken) throw new BadRequestError("new_key must differ from the key being regenerated", { param: "new_key" });
        return this.lock.run(oldToken, (mode) =>
          commitChangeWithEvent<RegenerateResponse>(
            this.db,
            this.events,
            async (tx) => {
              if (mode === "advisory") await lockRotationAdvisory(tx, oldToken);
              // A retry that waited behind the first attempt finds its result here.
              const replayed = await attempt.replayed(tx);
              if (replayed) return { result: replayed, stale: null };
              const target = await lockKeyByToken(tx, oldToken);
              if (!target) throw new NotFoundError("key not found", { code: "key_not_found", param: "key" });
              const current = target.row;
              const teamId = patch.team_id !== undefined ? patch.team_id : current.team_id;
              if (teamId && (patch.team_id !== undefined || patch.models !== undefined)) await assertTeamAccepts(tx, teamId, patch.models ?? current.models);
              const userId = patch.user_id !== undefined ? patch.user_id : current.user_id;
              if (userId && (patch.user_id !== undefined || patch.models !== undefined)) await assertUserAccepts(tx, userId, patch.models ?? current.models);
              // A token in grace addresses its key for every other operation (docs/coherence.md #8), but not for a
              // rotation: a second client retrying "regenerate the old key" without an Idempotency-Key would rotate
              // the key once more, and concurrent regenerations must give exactly one new key (docs/coherence.md #4).
              // The answer is a refusal that names the key, never "not found".
              if (target.addressedAs === "deprecated") {
                throw new ConflictError(`this key was already regenerated (key_id ${current.key_id}, now ${current.key_name}); regenerate the active key instead`, {
                  code: "key_already_rotated",
                  param: "key",
                });
              }
              // Fencing: the key changed after the token was read (a concurrent rotation won, or a lock was lost
              // to a pause): this request must not rotate it a second time.
              if (current.version !== target.versionSeen) {
                throw new ConflictError("the key changed while it was being regenerated; retry", { code: "rotation_conflict", param: "key" });
              }
              // A generated key cannot collide; a caller's new_key may be an old key still in its grace.
              if (newKey !== undefined && (await findDeprecatedKey(tx, newToken))) throw new ConflictError("new_key is already in use", { code: "key_exists", param: "new_key" });
              const rotated = await rotateKeyToken(tx, { keyId: current.key_id, expectedVersion: current.version, newToken, newKeyName: keyDisplayName(newPlaintext), patch });
              if (!rotated) throw new ConflictError("the key changed while it was being regenerated; retry", { code: "rotation_conflict", param: "key" });
              const olderKeys = await repointDeprecatedKeys(tx, rotated.key_id, newToken);
              if (graceMs > 0) await insertDeprecatedKey(tx, { token: current.token, keyId: rotated.key_id, activeToken: newToken, keyName: current.key_name, graceMs });
              return {
                // Every older key is cached as this key's record too: all of them go stale with it.
                stale: { kind: "regenerate", tokens: [current.token, newToken, ...olderKeys, oldToken], version: rotated.version },
                // After the event is appended (the event-order lock held, COMMIT next): the grace starts as close
                // to the commit as the transaction can get, not before a wait on locks (docs/coherence.md #1).
                finalize: async (ftx) => {
                  const revokeAt = graceMs > 0 ? await startGraceNow(ftx, current.token, graceMs) : rotated.updated_at;
                  const response = regeneratedView(newPlaintext, rotated, revokeAt, current.key_name);
                  await attempt.store(ftx, response);
                  return response;
                },
              };
            },
            log,
          ),
        );
      });
    } catch (err) {
      throw mapConflict(err);
    }
  }

  /** Absent means the configured default; anything unparseable, negative or over the maximum is a 400. */
  private parseGrace(value: string | undefined): number {
    if (value === undefined) return this.settings.defaultGraceMs;
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch (err) {
      if (err instanceof DurationError) throw new BadRequestError(`grace_period: ${err.message}`, { code: "invalid_grace_period", param: "grace_period" });
      throw err;
    }
    if (ms > this.settings.maxGraceMs) {
      throw new BadRequestError(`grace_period: ${value} is longer than the maximum of ${this.settings.maxGraceMs / 86_400_000}d`, {
        code: "invalid_grace_period",
        param: "grace_period",
      });
    }
    return ms;
  }
}

function regeneratedView(plaintext: string, row: Parameters<typeof keyView>[0], revokeAt: Date, previousKeyName: string) {
  return { key: plaintext, ...keyView(row), revoke_at: revokeAt, previous_key_name: previousKeyName };
}
