import { randomUUID } from "node:crypto";
import { teamCacheKey } from "../auth/auth-record.js";
import { ConflictError, NotFoundError } from "../errors/errors.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";
import { toLimitPatch } from "../keys/key-patch.js";
import { withLiveSpend, type LiveSpend } from "../keys/live-spend.js";
import { keyView } from "../keys/key-view.js";
import { ledgerOf } from "../limits/admission.js";
import type { Database } from "../store/database.js";
import { isUniqueViolation } from "../store/db.js";
import { listKeys, lockKeysOf } from "../store/key-store.js";
import {
  deleteTeams,
  dropMemberSpend,
  findTeam,
  insertTeam,
  listTeams,
  lockTeams,
  memberSpends,
  updateTeam,
  type TeamMember,
  type TeamPatch,
  type TeamRow,
} from "../store/team-store.js";
import type { MemberUpdateRequest, NewTeamRequest, TeamMemberInput, UpdateTeamRequest } from "./team-schemas.js";

/**
 * The /team operations (LiteLLM's API). Every change that alters what a team's keys may do (creation, update,
 * block, unblock, delete, and membership: a member's `max_budget_in_team` limits its keys in the team) commits
 * with **one** event naming the team's cache key (`team:<team_id>`): each replica evicts that one record, and
 * every key of the team is checked against the new one on its next request (docs/teams.md).
 */
export class TeamService {
  constructor(
    private readonly db: Database,
    private readonly events: CommittedEventSink,
    private readonly servedModels: () => ReadonlySet<string>,
    private readonly spend: LiveSpend,
  ) {}

  async create(req: NewTeamRequest, log?: ChangeLog) {
    const patch = this.toPatch(req);
    const teamId = req.team_id ?? randomUUID();
    try {
      // An event, like every change: a replica may hold "no such team" for this id (a key that named it before).
      return await commitChangeWithEvent(
        this.db,
        this.events,
        async (tx) => {
          const row = await insertTeam(tx, { ...patch, team_id: teamId });
          if (!row) throw new ConflictError(`the team_id '${teamId}' is taken (by a team, or by a deleted one: ids are never reused)`, { code: "team_exists", param: "team_id" });
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
    const patch = this.toPatch(fields);
    // A new member list goes through the members' bookkeeping (spend of those who left, ledgers of changed budgets).
    const { members_with_roles: members, ...rest } = patch;
    const result =
      members === undefined
        ? await this.change(teamId, patch, "team_update", log)
        : await this.editMembers(teamId, () => members, log, rest).catch((err) => Promise.reject(mapTeamConflict(err)));
    // A team that had no limits kept no live ledger up to date: a new budget starts from Postgres's spend.
    if (fields.max_budget !== undefined) await this.spend.afterReset(ledgerOf("team", teamId));
    return result;
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
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        await lockKeysOf(tx, "team", teamIds);
        const locked = await lockTeams(tx, teamIds);
        const missing = teamIds.filter((id) => !locked.some((t) => t.team_id === id));
        if (missing.length > 0) throw new NotFoundError(`team(s) not found: ${missing.join(", ")}`, { code: "team_not_found", param: "team_ids" });
        const { teams, keyTokens } = await deleteTeams(tx, teamIds);
        const version = Math.max(...teams.map((t) => t.version));
        return { result: { deleted_teams: teamIds, deleted_keys: keyTokens.length }, stale: { kind: "team_delete", tokens: teams.map((t) => teamCacheKey(t.team_id)), version } };
      },
      log,
    );
  }

  async addMembers(teamId: string, members: TeamMemberInput[], log?: ChangeLog) {
    return this.editMembers(
      teamId,
      (current) => {
        const next = [...current];
        for (const m of members) {
          const at = next.findIndex((c) => (m.user_id !== undefined && c.user_id === m.user_id) || (m.user_email && c.user_email === m.user_email));
          const entry: TeamMember = { user_id: m.user_id ?? m.user_email!, user_email: m.user_email ?? null, role: m.role };
          const budget = m.max_budget_in_team !== undefined ? m.max_budget_in_team : at === -1 ? undefined : next[at]!.max_budget_in_team;
          if (budget !== undefined && budget !== null) entry.max_budget_in_team = budget;
          if (at === -1) next.push(entry);
          else next[at] = entry;
        }
        return next;
      },
      log,
    );
  }

  /** LiteLLM's /team/member_update: a member's role or budget inside the team. */
  async updateMember(req: MemberUpdateRequest, log?: ChangeLog) {
    return this.editMembers(
      req.team_id,
      (current) => {
        const at = current.findIndex((c) => isMember(c, req));
        if (at === -1) throw new NotFoundError("no such member in this team", { code: "member_not_found", param: req.user_id !== undefined ? "user_id" : "user_email" });
        const next = [...current];
        const entry: TeamMember = { ...current[at]!, ...(req.role !== undefined && { role: req.role }) };
        if (req.max_budget_in_team === null) delete entry.max_budget_in_team;
        else if (req.max_budget_in_team !== undefined) entry.max_budget_in_team = req.max_budget_in_team;
        next[at] = entry;
        return next;
      },
      log,
    );
  }

  async deleteMember(teamId: string, who: { user_id?: string | undefined; user_email?: string | undefined }, log?: ChangeLog) {
    return this.editMembers(
      teamId,
      (current) => {
        const next = current.filter((c) => !isMember(c, who));
        if (next.length === current.length)
          throw new NotFoundError("no such member in this team", { code: "member_not_found", param: who.user_id !== undefined ? "user_id" : "user_email" });
        return next;
      },
      log,
    );
  }

  async info(teamId: string) {
    const row = await this.db.query((q) => findTeam(q, teamId));
    if (!row || row.deleted_at) throw new NotFoundError(`team '${teamId}' not found`, { code: "team_not_found", param: "team_id" });
    // The first 100 keys and the count: a team may have many thousands (GET /key/list?team_id= pages through them).
    const [keys, spends] = await Promise.all([
      this.db.query((q) => listKeys(q, { keyAlias: null, userId: null, teamId, page: 1, size: 100 })),
      this.db.query((q) => memberSpends(q, teamId)),
    ]);
    const durable = new Map(spends.map((m) => [m.user_id, m.spend]));
    const team_memberships = await Promise.all(
      row.members_with_roles.map(async (m) => {
        const spend = durable.get(m.user_id) ?? 0;
        const live = m.max_budget_in_team == null ? null : await this.spend.liveSpend(ledgerOf("team_member", m.user_id, teamId));
        return { team_id: teamId, user_id: m.user_id, spend: live ?? spend, durable_spend: spend, max_budget_in_team: m.max_budget_in_team ?? null };
      }),
    );
    return {
      team_id: row.team_id,
      team_info: await withLiveSpend(teamView(row), ledgerOf("team", teamId), this.spend),
      keys: keys.rows.map(keyView),
      key_count: Number(keys.total),
      team_memberships,
    };
  }

  async list(page: { page: number; size: number }) {
    const { rows } = await this.db.query((q) => listTeams(q, { limit: page.size, offset: (page.page - 1) * page.size }));
    // Live spend, as /team/info shows it: a team over its budget is listed as such (the admin UI's status).
    return Promise.all(rows.map((row) => withLiveSpend(teamView(row), ledgerOf("team", row.team_id), this.spend)));
  }

  private async change(teamId: string, patch: TeamPatch, kind: "team_update" | "team_block" | "team_unblock", log?: ChangeLog) {
    try {
      return await commitChangeWithEvent(
        this.db,
        this.events,
        async (tx) => {
          const [locked] = await lockTeams(tx, [teamId]);
          if (!locked) throw new NotFoundError(`team '${teamId}' not found`, { code: "team_not_found", param: "team_id" });
          const row = (await updateTeam(tx, teamId, patch))!;
          return { result: teamView(row), stale: { kind, tokens: [teamCacheKey(teamId)], version: row.version } };
        },
        log,
      );
    } catch (err) {
      throw mapTeamConflict(err);
    }
  }

  /**
   * A membership change is a team change (one event): a member's budget is part of the team's record. A member
   * who leaves loses its spend in the team; a member whose budget changed has its live ledger rebuilt from
   * Postgres (nothing kept it up to date while it had no budget).
   */
  private async editMembers(teamId: string, edit: (current: TeamMember[]) => TeamMember[], log?: ChangeLog, alsoPatch: TeamPatch = {}) {
    const { view, budgetChanged } = await commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const [locked] = await lockTeams(tx, [teamId]);
        if (!locked) throw new NotFoundError(`team '${teamId}' not found`, { code: "team_not_found", param: "team_id" });
        const before = locked.members_with_roles;
        const after = edit(before);
        const gone = before.filter((b) => !after.some((a) => a.user_id === b.user_id)).map((b) => b.user_id);
        if (gone.length > 0) await dropMemberSpend(tx, teamId, gone);
        const budgetChanged = after.filter((a) => (a.max_budget_in_team ?? null) !== (before.find((b) => b.user_id === a.user_id)?.max_budget_in_team ?? null));
        const row = (await updateTeam(tx, teamId, { ...alsoPatch, members_with_roles: after }))!;
        return {
          result: { view: teamView(row), budgetChanged: [...gone, ...budgetChanged.map((m) => m.user_id)] },
          stale: { kind: "team_update", tokens: [teamCacheKey(teamId)], version: row.version },
        };
      },
      log,
    );
    for (const userId of budgetChanged) await this.spend.afterReset(ledgerOf("team_member", userId, teamId));
    return view;
  }

  private toPatch(req: Omit<NewTeamRequest, "team_id">): TeamPatch {
    const patch: TeamPatch = toLimitPatch(req, this.servedModels());
    if (req.team_alias !== undefined) patch.team_alias = req.team_alias;
    if (req.blocked !== undefined) patch.blocked = req.blocked;
    if (req.soft_budget !== undefined) patch.soft_budget = req.soft_budget;
    if (req.members_with_roles !== undefined)
      patch.members_with_roles = req.members_with_roles.map((m) => ({
        user_id: m.user_id ?? m.user_email!,
        user_email: m.user_email ?? null,
        role: m.role,
        ...(m.max_budget_in_team != null && { max_budget_in_team: m.max_budget_in_team }),
      }));
    return patch;
  }
}

function isMember(m: TeamMember, who: { user_id?: string | undefined; user_email?: string | undefined }): boolean {
  return (who.user_id !== undefined && m.user_id === who.user_id) || (who.user_email !== undefined && m.user_email === who.user_email);
}

function mapTeamConflict(err: unknown): unknown {
  if (isUniqueViolation(err, "gh_teams_team_alias_key")) return new ConflictError("a team with this team_alias already exists", { code: "team_alias_exists", param: "team_alias" });
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
    soft_budget: row.soft_budget,
    metadata: row.metadata,
    members_with_roles: row.members_with_roles,
    created_at: row.created_at,
    updated_at: row.updated_at,
    version: row.version,
  };
}
