import { BadRequestError, NotFoundError } from "../errors/errors.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";
import type { Database } from "../store/database.js";
import type { Queryable } from "../store/db.js";
import { allModels, deleteModel, insertModel, lockModel, resealModel, updateModel, type ModelRow } from "../store/model-store.js";
import type { CredentialSeal } from "./credential-seal.js";
import { PUBLIC_API_BASES } from "../config/models.js";
import { deploymentOf, maskedParams, type ApiLitellmParams } from "./model-params.js";
import { MODELS_CACHE_KEY, type ModelRegistry } from "./model-registry.js";
import type { NewModelRequest, UpdateModelRequest } from "./model-schemas.js";

/**
 * The /model operations (LiteLLM's API). Every change commits one event naming `models:all`; each replica drops
 * its database models, credentials included, and reads them again (model-registry.ts). Credentials are sealed
 * before they are written and never returned (docs/models.md).
 */
export class ModelService {
  constructor(
    private readonly db: Database,
    private readonly events: CommittedEventSink,
    private readonly registry: ModelRegistry,
    private readonly seal: CredentialSeal,
  ) {}

  async create(req: NewModelRequest, log?: ChangeLog) {
    const { api_key: apiKey, ...params } = req.litellm_params;
    // Refuses what could not be served (where a model without an api_base goes does not change that).
    deploymentOf(req.model_name, req.litellm_params as ApiLitellmParams, apiKey, PUBLIC_API_BASES);
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const row = await insertModel(tx, { model_name: req.model_name, params, api_key_sealed: apiKey ? this.seal.seal(apiKey) : null, model_info: req.model_info });
        return { result: modelView(row), stale: { kind: "model_change", tokens: [MODELS_CACHE_KEY], version: row.version } };
      },
      log,
    );
  }

  /** Replaces the fields given; `litellm_params` given without `api_key` keeps the stored key. */
  async update(req: UpdateModelRequest, log?: ChangeLog) {
    const id = req.model_id ?? (req.model_info?.id as string | undefined);
    if (!id) throw new BadRequestError("give the model's id as model_id (or model_info.id)", { code: "missing_model_id", param: "model_id" });
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const current = await lockModel(tx, id);
        if (!current) throw new NotFoundError(`model '${id}' not found`, { code: "model_not_found", param: "model_id" });
        const name = req.model_name ?? current.model_name;
        const { api_key: newKey, ...given } = req.litellm_params ?? {};
        const params = { ...(current.params as ApiLitellmParams), ...given } as ApiLitellmParams;
        // A stored key goes only where it went before: a new api_base needs the key given again.
        if (given.api_base !== undefined && given.api_base !== (current.params as ApiLitellmParams).api_base && newKey === undefined && current.api_key_sealed !== null) {
          throw new BadRequestError("changing api_base needs api_key too: the stored key is not sent to a new host", { code: "api_key_required", param: "litellm_params.api_key" });
        }
        const sealed = newKey !== undefined ? this.seal.seal(newKey) : current.api_key_sealed;
        deploymentOf(name, params, newKey, PUBLIC_API_BASES);
        const { id: _id, ...info } = req.model_info ?? current.model_info;
        const row = (await updateModel(tx, id, { model_name: name, params, api_key_sealed: sealed, model_info: info }))!;
        return { result: modelView(row), stale: { kind: "model_change", tokens: [MODELS_CACHE_KEY], version: row.version } };
      },
      log,
    );
  }

  async delete(id: string, log?: ChangeLog) {
    return commitChangeWithEvent(
      this.db,
      this.events,
      async (tx) => {
        const gone = await deleteModel(tx, id);
        if (!gone) throw new NotFoundError(`model '${id}' not found (models from the config file cannot be deleted here)`, { code: "model_not_found", param: "id" });
        return { result: { id, model_name: gone.model_name, deleted: true }, stale: { kind: "model_change", tokens: [MODELS_CACHE_KEY], version: gone.tombstone_version } };
      },
      log,
    );
  }

  /** Every deployment this replica serves, config and database, LiteLLM's /model/info shape; never a key. */
  async info() {
    await this.registry.settled();
    return {
      data: this.registry.describe().map((d) =>
        d.row
          ? {
              model_name: d.row.model_name,
              litellm_params: maskedParams(d.row.params, d.row.api_key_sealed !== null),
              model_info: { ...d.row.model_info, id: d.row.model_id, db_model: true },
            }
          : {
              model_name: d.deployment.modelName,
              litellm_params: maskedParams(
                {
                  model: `${d.deployment.provider}/${d.deployment.upstreamModel}`,
                  ...(d.deployment.apiBase ? { api_base: d.deployment.apiBase } : {}),
                  // What a request on it is charged (0 where the config sets no price), as a database model shows its own.
                  input_cost_per_token: d.deployment.inputCostPerToken,
                  output_cost_per_token: d.deployment.outputCostPerToken,
                  cache_read_input_token_cost: d.deployment.cacheReadCostPerToken,
                  cache_creation_input_token_cost: d.deployment.cacheCreationCostPerToken,
                },
                d.deployment.apiKey !== undefined,
              ),
              model_info: { id: null, db_model: false },
            },
      ),
    };
  }

  /** Seals every stored credential again with the current salt key (after a rotation); answers how many. */
  reseal(): Promise<number> {
    return this.db.query((q) => resealCredentials(q, this.seal));
  }
}

/** `gatehouse models reseal`: every credential not sealed with the current key is opened and sealed again. */
export async function resealCredentials(q: Queryable, seal: CredentialSeal): Promise<number> {
  let resealed = 0;
  for (const row of await allModels(q)) {
    if (!row.api_key_sealed || seal.isCurrent(row.api_key_sealed)) continue;
    if (await resealModel(q, row.model_id, seal.seal(seal.open(row.api_key_sealed)), row.api_key_sealed)) resealed++;
  }
  return resealed;
}

/** A model row as answered: never its key. */
export function modelView(row: ModelRow) {
  return {
    model_id: row.model_id,
    model_name: row.model_name,
    litellm_params: maskedParams(row.params, row.api_key_sealed !== null),
    model_info: { ...row.model_info, id: row.model_id, db_model: true },
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}
