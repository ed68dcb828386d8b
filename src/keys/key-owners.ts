import { ALL_PROXY_MODELS } from "../auth/auth-record.js";
import { BadRequestError } from "../errors/errors.js";
import type { Queryable } from "../store/db.js";
import { findLiveTeamForShare } from "../store/team-store.js";
import { findUserForShare } from "../store/user-store.js";

/**
 * Checks of the owners a key names, inside the key's transaction, with the owner's row held against deletion
 * until it commits (docs/teams.md, docs/users.md).
 *
 * A key may name only a live team, and only models its team allows (a key with no models of its own inherits
 * the team's, docs/teams.md). Checked inside the key's transaction, with the team held against deletion until
 * it commits.
 */
export async function assertTeamAccepts(tx: Queryable, teamId: string, keyModels: readonly string[]): Promise<void> {
  const team = await findLiveTeamForShare(tx, teamId);
  if (!team) throw new BadRequestError(`team '${teamId}' does not exist (or was deleted)`, { code: "team_not_found", param: "team_id" });
  if (team.models.length === 0 || team.models.includes(ALL_PROXY_MODELS)) return;
  const outside = keyModels.filter((m) => m !== ALL_PROXY_MODELS && !team.models.includes(m));
  if (outside.length > 0 || keyModels.includes(ALL_PROXY_MODELS)) {
    throw new BadRequestError(`the team '${teamId}' does not allow model(s): ${(outside.length > 0 ? outside : [ALL_PROXY_MODELS]).join(", ")}`, {
      code: "model_not_in_team",
      param: "models",
    });
  }
}

/**
 * A key may name any user_id (LiteLLM's implicit users), except a deleted user's; when the user exists and has
 * models of its own, the key's models must be among them.
 */
export async function assertUserAccepts(tx: Queryable, userId: string, keyModels: readonly string[]): Promise<void> {
  const user = await findUserForShare(tx, userId);
  if (!user) return;
  if (user.deleted_at) throw new BadRequestError(`user '${userId}' was deleted`, { code: "user_deleted", param: "user_id" });
  if (user.models.length === 0 || user.models.includes(ALL_PROXY_MODELS)) return;
  const outside = keyModels.filter((m) => m !== ALL_PROXY_MODELS && !user.models.includes(m));
  if (outside.length > 0 || keyModels.includes(ALL_PROXY_MODELS)) {
    throw new BadRequestError(`the user '${userId}' may not use model(s): ${(outside.length > 0 ? outside : [ALL_PROXY_MODELS]).join(", ")}`, {
      code: "model_not_allowed_for_user",
      param: "models",
    });
  }
}
