import { z } from "zod";
import { ID, limitFields, notSupported, text } from "../keys/key-schemas.js";
import { TEAM_FIELDS, refusedNames } from "../config/litellm-fields.js";

/**
 * Request bodies of the /team admin routes, LiteLLM's field names. Unknown fields, and LiteLLM team fields Gatehouse
 * does not support unless they ask for nothing, are refused with a 400 that names them (docs/teams.md).
 */

const MEMBER_BUDGET = z.number().finite().nonnegative().nullable();

const member = z
  .object({
    user_id: ID.optional(),
    user_email: text().nullable().optional(),
    role: z.enum(["admin", "user"]).default("user"),
    max_budget_in_team: MEMBER_BUDGET.optional(),
  })
  .strict()
  .refine((m) => m.user_id !== undefined || m.user_email !== undefined, { message: "a member needs a user_id (or a user_email)" });

const teamFields = {
  team_alias: text().nullable().optional(),
  ...limitFields,
  blocked: z.boolean().optional(),
  members_with_roles: z.array(member).max(10_000).optional(),
  soft_budget: z.number().finite().nonnegative().nullable().optional(),
  ...notSupported(refusedNames(TEAM_FIELDS)),
};

export const newTeamSchema = z.object({ ...teamFields, team_id: ID.optional() }).strict();
export const updateTeamSchema = z.object({ ...teamFields, team_id: ID }).strict();
export const teamRefSchema = z.object({ team_id: ID }).strict();
export const deleteTeamsSchema = z.object({ team_ids: z.array(ID).min(1).max(1_000) }).strict();
// LiteLLM's member_add takes one max_budget_in_team for every member it adds; a member's own field wins.
export const memberAddSchema = z.object({ team_id: ID, member: z.union([member, z.array(member).min(1).max(1_000)]), max_budget_in_team: MEMBER_BUDGET.optional() }).strict();
export const memberUpdateSchema = z
  .object({ team_id: ID, user_id: ID.optional(), user_email: text().optional(), role: z.enum(["admin", "user"]).optional(), max_budget_in_team: MEMBER_BUDGET.optional() })
  .strict()
  .refine((b) => b.user_id !== undefined || b.user_email !== undefined, { message: 'give "user_id" or "user_email"' });
export const memberDeleteSchema = z
  .object({ team_id: ID, user_id: ID.optional(), user_email: text().optional() })
  .strict()
  .refine((b) => b.user_id !== undefined || b.user_email !== undefined, { message: 'give "user_id" or "user_email"' });
export const teamInfoQuerySchema = z.object({ team_id: ID });
export const listTeamsQuerySchema = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  size: z.coerce.number().int().min(1).max(100).default(100),
});

export type NewTeamRequest = z.infer<typeof newTeamSchema>;
export type UpdateTeamRequest = z.infer<typeof updateTeamSchema>;
export type TeamMemberInput = z.infer<typeof member>;
export type MemberUpdateRequest = z.infer<typeof memberUpdateSchema>;
