-- Spend at every level a request belongs to: its key (sql/0004), its team, its user and its team member.
-- Teams and users reset their budget periods like keys (`budget_duration`), with the same generations: spend
-- charged under an older generation is not added to the new period.
ALTER TABLE gh_teams ADD COLUMN spend_generation bigint NOT NULL DEFAULT 0;
ALTER TABLE gh_users ADD COLUMN spend_generation bigint NOT NULL DEFAULT 0;

-- A team member's spend inside its team (its budget, `max_budget_in_team`, is in the team's members_with_roles,
-- so a change to it is a team change). Written by the spend flush, for members only; removed with the member.
-- Member budgets have no period: spend_generation stays 0 and is kept for the flush's uniform shape.
CREATE TABLE gh_team_member_spend (
  team_id          text NOT NULL,
  user_id          text NOT NULL,
  spend            double precision NOT NULL DEFAULT 0,
  spend_generation bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (team_id, user_id)
);

-- The sweeper finds teams and users whose budget period ended.
CREATE INDEX gh_teams_budget_reset_at_idx ON gh_teams (budget_reset_at) WHERE budget_reset_at IS NOT NULL;
CREATE INDEX gh_users_budget_reset_at_idx ON gh_users (budget_reset_at) WHERE budget_reset_at IS NOT NULL;
