import { DB_MODEL } from "./admin-actions.js";
import { commitTime, type Violation } from "./checker.js";
import { CommitClock } from "./commit-clock.js";
import { type CommittedEvent, checkerNow } from "./history.js";
import type { Model } from "./model.js";
import type { RunContext } from "./run-setup.js";

/**
 * What the run ends with: the changes that committed, as the checker judges them, and the database's final state
 * against the model (invariants 3 and 11: the surviving primary holds exactly what the acknowledged changes say).
 */

/**
 * The surviving database's events, each filed under the generation that committed it and dated by its commit (ids
 * are issued again after a promotion: an id above the newest a promoted standby held was issued by it or a later
 * primary), and the changes heard to commit on a primary above the newest id the standby promoted after it held:
 * lost.
 */
export async function committedEvents(ctx: RunContext): Promise<CommittedEvent[]> {
  const { postgres, clock } = ctx;
  const { rows } = await postgres.admin.query<{ id: string; kind: string; tokens: string[]; at: number }>(
    "SELECT id, kind, tokens, (extract(epoch FROM created_at) * 1000)::float8 AS at FROM gh_key_events ORDER BY id",
  );
  const genOf = (id: number) => {
    let g = 0;
    for (let i = 1; i < postgres.forkIds.length; i++) if (id > postgres.forkIds[i]!) g = i;
    return g;
  };
  const events: CommittedEvent[] = rows.map((r) => {
    const id = Number(r.id);
    const g = genOf(id);
    const heard = clock.heard.get(CommitClock.key(g, id));
    return { id, gen: g, kind: r.kind, tokens: r.tokens, writtenAt: r.at, at: commitTime(r.at, heard?.at), ...(heard ? { committedBy: heard.at } : {}) };
  });
  for (const h of clock.heard.values()) {
    if (h.gen >= postgres.gen || h.id <= postgres.forkIds[h.gen + 1]!) continue;
    events.push({ id: h.id, gen: h.gen, kind: h.kind, tokens: h.tokens ?? [], writtenAt: h.writtenAt, at: commitTime(h.writtenAt, h.at), committedBy: h.at, lost: true });
  }
  return events;
}

/**
 * The database holds exactly the keys the model says, with the model's token, block and models; the database
 * model's deployments the model says (a /model/new whose answer was lost counts too); and each live team's and
 * user's model list. One "final state" violation per difference.
 */
export async function checkFinalState(ctx: RunContext, model: Model): Promise<Violation[]> {
  const admin = ctx.postgres.admin;
  const violations: Violation[] = [];
  const finalState = (message: string) => violations.push({ kind: "final state", message, at: checkerNow(), window: [] });
  const db = await admin.query<{ key_id: string; token: string; blocked: boolean; models: string[] }>("SELECT key_id, token, blocked, models FROM gh_keys");
  const rowsById = new Map(db.rows.map((r) => [r.key_id, r]));
  for (const key of model.keys.values()) {
    const last = key.changes.at(-1)!;
    const row = rowsById.get(key.keyId);
    const problem = last.deleted
      ? row && `key ${key.keyId} is still in the database, but a delete of it was acknowledged`
      : !row
        ? `key ${key.keyId} is gone from the database, but no acknowledged delete explains it`
        : row.token !== key.current
          ? `key ${key.keyId} has token ${row.token.slice(0, 8)}…, the model ${key.current.slice(0, 8)}…`
          : row.blocked !== last.blocked || JSON.stringify(row.models) !== JSON.stringify(last.models)
            ? `key ${key.keyId} is blocked=${row.blocked} models=${JSON.stringify(row.models)}, the model blocked=${last.blocked} models=${JSON.stringify(last.models)}`
            : null;
    if (problem) finalState(problem);
  }
  const deployments = (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM gh_models WHERE model_name = $1", [DB_MODEL])).rows[0]!.n;
  const modelled = model.dbModel.at(-1)!.ids.length;
  if (deployments !== modelled) finalState(`${DB_MODEL} has ${deployments} deployments in the database, the model ${modelled}`);
  for (const [what, sql, timeline] of [
    ["team", "SELECT team_id AS id, models FROM gh_teams WHERE deleted_at IS NULL", model.teams],
    ["user", "SELECT user_id AS id, models FROM gh_users WHERE deleted_at IS NULL", model.users],
  ] as const) {
    for (const row of (await admin.query<{ id: string; models: string[] }>(sql)).rows) {
      const last = timeline.get(row.id)?.at(-1)?.models ?? [];
      if (JSON.stringify(row.models) !== JSON.stringify(last)) finalState(`${what} ${row.id} has models ${JSON.stringify(row.models)}, the model ${JSON.stringify(last)}`);
    }
  }
  return violations;
}
