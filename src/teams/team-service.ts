import { randomUUID } from "node:crypto";
import { teamCacheKey } from "../auth/auth-record.js";
import { ConflictError, NotFoundError } from "../errors/errors.js";
import { commitKeyChange, type ChangeLog, type CommittedEventSink } from "../keys/key-change.js";
import { toLimitPatch } from "../keys/key-patch.js";
import { keyView } from "../keys/key-view.js";
import type { Database } from "../store/database.js";
import { isUniqueViolation, listKeys } from "../store/key-store.js";
import { deleteTeams, findTeam, insertTeam, listTeams, lockTeams, updateTeam, type TeamMember, type TeamPatch, type TeamRow } from "../store/team-store.js";
import type { NewTeamRequest, TeamMemberInput, UpdateTeamRequest } from "./team-schemas.js";

/**
 * The /team operations (LiteLLM's API). Every change that alters what a team's keys may do (creation, update,
 * block, unblock, delete) commits with **one** event naming the team's cache key (`team:<team_id>`): each replica
 * evicts that one record, and every key of the team is checked against the new one on its next request
 * (docs/teams.md). Membership changes alter no key's rights and write no event.
 */
export class TeamService {
  constructor(
    private readonly db: Database,
    private readonly events: CommittedEventSink,
    private readonly servedModels: () => ReadonlySet<string>,
  ) {}

  async create(req: NewTeamRequest, log?: ChangeLog) {
    const patch = this.toPatch(req);
    const teamId = req.team_id ?? randomUUID();
    try {
      // An event, like every change: a replica may hold "no such team" for this id (a key that named it before).
      return await commitKeyChange(
        this.db,
        this.events,
        async (tx) => {
          const row = await insertTeam(tx, { ...patch, team_id: teamId });
          if (!row) throw new ConflictError(`the team_id '${teamId}' is taken (by a team, or by a deleted one: ids are never reused)`, "team_exists", "team_id");
          return { result: teamView(row), stale: { kind: "team_new", tokens: [teamCacheKey(teamId)], version: row.version } };
        },
        log,
      );
    } catch (err) {
      throw mapTeamConflict(err);
    }
  }

  async update(req: UpdateTeamRequest, log?: ChangeLog) {
    const { team_id: teamId, ...fields } = req;
    return this.change(teamId, this.toPatch(fields), "team_update", log);
  }

  async setBlocked(teamId: string, blocked: boolean, log?: ChangeLog) {
    return this.change(teamId, { blocked }, blocked ? "team_block" : "team_unblock", log);
  }

  /**
   * Deletes teams: each is marked deleted (its id is never reused) and its keys are deleted, in one transaction
   * with one event per team. A key cached anywhere before the delete is refused by its team's record
   * (`team_deleted`), so no replica needs to hear of each key.
   */
  async delete(teamIds: string[], log?: ChangeLog) {
    return commitKeyChange(
      this.db,
      this.events,
      async (tx) => {
        const locked = await lockTeams(tx, teamIds);
        const missing = teamIds.filter((id) => !locked.some((t) => t.team_id === id));
        if (missing.length > 0) throw new NotFoundError(`team(s) not found: ${missing.join(", ")}`, "team_ids", "team_not_found");
        const { teams, keyTokens } = await deleteTeams(tx, teamIds);
        const version = Math.max(...teams.map((t) => t.version));
        return { result: { deleted_teams: teamIds, deleted_keys: keyTokens.length }, stale: { kind: "team_delete", tokens: teams.map((t) => teamCacheKey(t.team_id)), version } };
      },
      log,
    );
  }

  async addMembers(teamId: string, members: TeamMemberInput[]) {
    return this.editMembers(teamId, (current) => {
      const next = [...current];
      for (const m of members) {
        const at = next.findIndex((c) => (m.user_id !== undefined && c.user_id === m.user_id) || (m.user_email && c.user_email === m.user_email));
        const entry: TeamMember = { user_id: m.user_id ?? m.user_email!, user_email: m.user_email ?? null, role: m.role };
        if (at === -1) next.push(entry);
        else next[at] = entry;
      }
      return next;
    });
  }

  async deleteMember(teamId: string, who: { user_id?: string | undefined; user_email?: string | undefined }) {
    return this.editMembers(teamId, (current) => {
      const next = current.filter((c) => !((who.user_id !== undefined && c.user_id === who.user_id) || (who.user_email !== undefined && c.user_email === who.user_email)));
      if (next.length === current.length) throw new NotFoundError("no such member in this team", who.user_id !== undefined ? "user_id" : "user_email", "member_not_found");
      return next;
    });
  }

  async info(teamId: string) {
    const row = await this.db.query((q) => findTeam(q, teamId));
    if (!row || row.deleted_at) throw new NotFoundError(`team '${teamId}' not found`, "team_id", "team_not_found");
    // The first 100 keys and the count: a team may have many thousands (GET /key/list?team_id= pages through them).
    const keys = await this.db.query((q) => listKeys(q, { keyAlias: null, userId: null, teamId, page: 1, size: 100 }));
    return { team_id: row.team_id, team_info: teamView(row), keys: keys.rows.map(keyView), key_count: Number(keys.total) };
  }

  async list(page: { page: number; size: number }) {
    const { rows } = await this.db.query((q) => listTeams(q, { limit: page.size, offset: (page.page - 1) * page.size }));
    return rows.map(teamView);
  }

  private async change(teamId: string, patch: TeamPatch, kind: "team_update" | "team_block" | "team_unblock", log?: ChangeLog) {
    try {
      return await commitKeyChange(
        this.db,
        this.events,
        async (tx) => {
          const [locked] = await lockTeams(tx, [teamId]);
          if (!locked) throw new NotFoundError(`team '${teamId}' not found`, "team_id", "team_not_found");
          const row = (await updateTeam(tx, teamId, patch))!;
          return { result: teamView(row), stale: { kind, tokens: [teamCacheKey(teamId)], version: row.version } };
        },
        log,
      );
    } catch (err) {
      throw mapTeamConflict(err);
    }
  }

  private async editMembers(teamId: string, edit: (current: TeamMember[]) => TeamMember[]) {
    return this.db.transaction(async (tx) => {
      const [locked] = await lockTeams(tx, [teamId]);
      if (!locked) throw new NotFoundError(`team '${teamId}' not found`, "team_id", "team_not_found");
      const row = (await updateTeam(tx, teamId, { members_with_roles: edit(locked.members_with_roles) }))!;
      return teamView(row);
    });
  }

  private toPatch(req: Omit<NewTeamRequest, "team_id">): TeamPatch {
    const patch: TeamPatch = toLimitPatch(req, this.servedModels());
    if (req.team_alias !== undefined) patch.team_alias = req.team_alias;
    if (req.blocked !== undefined) patch.blocked = req.blocked;
    if (req.members_with_roles !== undefined)
      patch.members_with_roles = req.members_with_roles.map((m) => ({ user_id: m.user_id ?? m.user_email!, user_email: m.user_email ?? null, role: m.role }));
    return patch;
  }
}

function mapTeamConflict(err: unknown): unknown {
  if (isUniqueViolation(err, "gh_teams_team_alias_key")) return new ConflictError("a team with this team_alias already exists", "team_alias_exists", "team_alias");
  return err;
}

/** The LiteLLM-shaped JSON of a team. */
export function teamView(row: TeamRow) {
  return {
    team_id: row.team_id,
    team_alias: row.team_alias,
    models: row.models,
    max_budget: row.max_budget,
    spend: row.spend,
    budget_duration: row.budget_duration,
    budget_reset_at: row.budget_reset_at,
    tpm_limit: row.tpm_limit,
    rpm_limit: row.rpm_limit,
    max_parallel_requests: row.max_parallel_requests,
    blocked: row.blocked,
    metadata: row.metadata,
    members_with_roles: row.members_with_roles,
    created_at: row.created_at,
    updated_at: row.updated_at,
    version: row.version,
  };
}
