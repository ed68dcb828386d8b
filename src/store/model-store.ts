import type { Queryable } from "./db.js";

/** The only module that reads or writes `gh_models` (sql/0007_models.sql). */

export interface ModelRow {
  model_id: string;
  model_name: string;
  /** litellm_params without the api_key. */
  params: Record<string, unknown>;
  api_key_sealed: string | null;
  model_info: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
  version: number;
}

const INSERT_MODEL = `
INSERT INTO gh_models (model_name, params, api_key_sealed, model_info) VALUES ($1, $2::jsonb, $3, COALESCE($4::jsonb, '{}'::jsonb))
RETURNING *`;
const UPDATE_MODEL = `
UPDATE gh_models SET model_name = $2, params = $3::jsonb, api_key_sealed = $4, model_info = $5::jsonb,
  version = nextval('gh_key_version_seq'), updated_at = clock_timestamp()
WHERE model_id = $1::uuid
RETURNING *`;
const LOCK_MODEL = "SELECT * FROM gh_models WHERE model_id = $1::uuid FOR UPDATE";
const DELETE_MODEL = "DELETE FROM gh_models WHERE model_id = $1::uuid RETURNING *, nextval('gh_key_version_seq') AS tombstone_version";
const ALL_MODELS = "SELECT * FROM gh_models ORDER BY created_at, model_id";
const RESEAL = "UPDATE gh_models SET api_key_sealed = $2 WHERE model_id = $1::uuid AND api_key_sealed = $3";

export async function insertModel(db: Queryable, m: { model_name: string; params: object; api_key_sealed: string | null; model_info: object | undefined }): Promise<ModelRow> {
  const { rows } = await db.query<ModelRow>(INSERT_MODEL, [
    m.model_name,
    JSON.stringify(m.params),
    m.api_key_sealed,
    m.model_info === undefined ? null : JSON.stringify(m.model_info),
  ]);
  return rows[0]!;
}

export async function updateModel(
  db: Queryable,
  id: string,
  m: { model_name: string; params: object; api_key_sealed: string | null; model_info: object },
): Promise<ModelRow | null> {
  const { rows } = await db.query<ModelRow>(UPDATE_MODEL, [id, m.model_name, JSON.stringify(m.params), m.api_key_sealed, JSON.stringify(m.model_info)]);
  return rows[0] ?? null;
}

export async function lockModel(tx: Queryable, id: string): Promise<ModelRow | null> {
  return (await tx.query<ModelRow>(LOCK_MODEL, [id])).rows[0] ?? null;
}

export async function deleteModel(tx: Queryable, id: string): Promise<(ModelRow & { tombstone_version: number }) | null> {
  return (await tx.query<ModelRow & { tombstone_version: number }>(DELETE_MODEL, [id])).rows[0] ?? null;
}

export async function allModels(db: Queryable): Promise<ModelRow[]> {
  return (await db.query<ModelRow>(ALL_MODELS)).rows;
}

/** Replaces one sealed credential, only if it is still the one read (a concurrent update wins). */
export async function resealModel(db: Queryable, id: string, sealed: string, expected: string): Promise<boolean> {
  return ((await db.query(RESEAL, [id, sealed, expected])).rowCount ?? 0) > 0;
}
