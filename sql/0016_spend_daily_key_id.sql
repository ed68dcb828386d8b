-- The key each daily total's token belongs to. Totals are kept per token (key_hash), and a rotation gives a key a
-- new token: with the key beside them, a report per key sums a key's tokens into one group (the admin UI's spend
-- per key), even after an old token's grace ended and no key lists it any more. Written by every batch from the
-- spend log rows, which carry their key_id; null for the master key ('' key_hash).
ALTER TABLE gh_spend_daily ADD COLUMN key_id uuid;

-- The totals already there: their token's key, while a key still lists that token (its current one, or one in its
-- grace). A token whose grace ended before this migration stays a group of its own (its key is not known here).
UPDATE gh_spend_daily d SET key_id = k.key_id FROM gh_keys k WHERE d.key_hash = k.token;
UPDATE gh_spend_daily d SET key_id = k.key_id FROM gh_deprecated_keys k WHERE d.key_hash = k.token AND d.key_id IS NULL;
