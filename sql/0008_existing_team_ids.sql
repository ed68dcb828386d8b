-- Before teams existed, a key's team_id was free text. A key now names a team that exists (or it is refused as
-- team_deleted), so every team_id keys already name becomes a team, with defaults (no models list, no limits).
INSERT INTO gh_teams (team_id)
SELECT DISTINCT team_id FROM gh_keys WHERE team_id IS NOT NULL AND length(team_id) BETWEEN 1 AND 256
ON CONFLICT (team_id) DO NOTHING;
