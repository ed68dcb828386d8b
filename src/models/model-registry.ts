import type { ModelDeployment } from "../config/schema.js";
import { ServiceUnavailableError } from "../errors/errors.js";
import type { Logger } from "../logger.js";
import { ModelRouter } from "../proxy/model-router.js";
import type { Database } from "../store/database.js";
import { allModels, type ModelRow } from "../store/model-store.js";
import type { CredentialSeal } from "./credential-seal.js";
import type { ProviderBases } from "../config/models.js";
import { deploymentOf, type ApiLitellmParams } from "./model-params.js";

/** The cache key a model change's event names: one for all database models (there are few of them). */
export const MODELS_CACHE_KEY = "models:all";

/**
 * Every model this replica serves: the config file's, fixed at start, and the database's, read at start and
 * again after each model event (docs/models.md).
 *
 * On an event the database models are dropped from memory **at once** — their credentials with them — and read
 * again; a request for a model that is not in the config waits for that read (a few milliseconds) rather than be
 * answered from what was dropped. If the read fails (Postgres unreachable), such requests get a 503 until a read
 * succeeds (every heartbeat's catch-up retries it): a deleted model is never served from memory.
 */
export class ModelRegistry {
  private router: ModelRouter;
  /** Config deployments only: what is served while this replica cannot vouch for its database models. */
  private readonly configRouter: ModelRouter;
  private dbDeployments: Array<{ row: ModelRow; deployment: ModelDeployment }> = [];
  /** The read in progress after an invalidation; undefined when the database models in memory are current. */
  private reading: Promise<void> | undefined;
  private readFailed = false;
  private knownNames: ReadonlySet<string>;
  private generation = 0;
  /** Requests in pickOnceRead now. */
  private waiting = 0;

  constructor(
    private readonly configDeployments: readonly ModelDeployment[],
    private readonly db: Database,
    private readonly seal: CredentialSeal,
    private readonly logger: Logger,
    /** Where a database model without an api_base goes (the settings' providerBases). */
    private readonly bases: ProviderBases,
    /** False while this replica may have missed events (coherence): then database models are not served. */
    private readonly fresh: () => boolean = () => true,
  ) {
    this.router = new ModelRouter([...configDeployments]);
    this.configRouter = new ModelRouter([...configDeployments]);
    this.knownNames = this.router.modelNames();
  }

  /** Reads the database models; at start, before the replica serves. */
  async load(): Promise<void> {
    const generation = ++this.generation;
    const reading = this.reload(generation);
    this.reading = reading;
    await reading;
  }

  /** A model event was applied: forget the database models now, read them again. */
  invalidate(): void {
    const generation = ++this.generation;
    this.readFailed = false;
    this.dbDeployments = [];
    this.router = new ModelRouter([...this.configDeployments]);
    const reading: Promise<void> = this.reload(generation).catch((err: Error) => {
      if (generation !== this.generation) return;
      this.readFailed = true;
      this.logger.warn({ err: err.message }, "reading the database models failed; requests for them get 503 until the next read succeeds");
    });
    this.reading = reading;
  }

  /**
   * The deployments for `model`, first choice first (proxy/model-router.ts); waits for a read in progress when the model is not in the config file. While this
   * replica may have missed events (Postgres or its notifications unreachable past the freshness bound), only
   * config models are served: a database model deleted meanwhile must not be served from memory, credentials
   * included (docs/models.md), and a model not in the config file is refused (thrown). The list itself, not a
   * promise, whenever nothing is waited for: the request path's usual case.
   */
  pick(model: string): ModelDeployment[] | undefined | Promise<ModelDeployment[] | undefined> {
    if (!this.fresh()) {
      const fromConfig = this.configRouter.pick(model);
      if (fromConfig) return fromConfig;
      // Not a config model: it may have been added, or deleted, since this replica last heard. Neither "served" nor
      // "not found" can be vouched for, so neither is answered (the history checker caught a 404 for a model added
      // seconds before, on a replica whose Postgres answered late).
      throw new ServiceUnavailableError("this model is not in the config file, and the database models cannot be vouched for while the database is unreachable; retry shortly", {
        code: "model_store_unavailable",
      });
    }
    const now = this.router.pick(model);
    if (now || this.reading === undefined) return now;
    return this.pickOnceRead(model);
  }

  /** pick() for a model not served now while the database models are being read: after the read (the last one). */
  private async pickOnceRead(model: string): Promise<ModelDeployment[] | undefined> {
    this.waiting++;
    try {
      // A newer invalidation may replace the read being waited for: wait for whichever is last.
      for (let reading = this.reading; reading !== undefined; reading = this.reading) {
        await reading;
        if (reading === this.reading) break;
      }
    } finally {
      this.waiting--;
    }
    if (this.readFailed)
      throw new ServiceUnavailableError("the model list is being read again and the database cannot be reached; retry shortly", { code: "model_store_unavailable" });
    return this.router.pick(model);
  }

  /** Every deployment served now: the config's and the database's as last read (routing state, /debug/routing). */
  deployments(): ModelDeployment[] {
    return [...this.configDeployments, ...this.dbDeployments.map((d) => d.deployment)];
  }

  /** Requests waiting now for a read of the database models to finish (GET /debug/routing). */
  get waitingForRead(): number {
    return this.waiting;
  }

  /** Retries a failed read (called every heartbeat). */
  retry(): void {
    if (this.readFailed) this.invalidate();
  }

  /**
   * The names clients may ask for: the config's and the database's as last read. Names only, never deployments: a
   * name stays listed while its model is being read again (a key may still be given it, /v1/models lists it), so
   * admin writes and listings do not flicker during a reload; serving goes through pick(), which waits for the read.
   */
  modelNames(): ReadonlySet<string> {
    return this.knownNames;
  }

  /**
   * Waits for a read of the database models in progress (and any read that replaced it): a listing made after a
   * model event then shows the models as read after it, not the empty list an invalidation leaves meanwhile.
   */
  async settled(): Promise<void> {
    for (let reading = this.reading; reading !== undefined; reading = this.reading) {
      await reading.catch(() => {});
      if (reading === this.reading) break;
    }
  }

  /** Every deployment with where it comes from, for /model/info (never with its key). */
  describe(): Array<{ source: "config" | "db"; deployment: ModelDeployment; row?: ModelRow }> {
    return [...this.configDeployments.map((deployment) => ({ source: "config" as const, deployment })), ...this.dbDeployments.map((d) => ({ source: "db" as const, ...d }))];
  }

  private async reload(generation: number): Promise<void> {
    const rows = await this.db.query((q) => allModels(q));
    const loaded: Array<{ row: ModelRow; deployment: ModelDeployment }> = [];
    for (const row of rows) {
      try {
        const apiKey = row.api_key_sealed ? this.seal.open(row.api_key_sealed) : undefined;
        loaded.push({
          row,
          deployment: {
            ...deploymentOf(row.model_name, row.params as ApiLitellmParams, apiKey, this.bases, row.model_info as Record<string, unknown> | null),
            id: row.model_id,
            modelId: row.model_id,
          },
        });
      } catch (err) {
        // One unreadable row (sealed with a key this replica lacks) must not take the others down.
        this.logger.error({ model_id: row.model_id, model_name: row.model_name, err: (err as Error).message }, "a database model cannot be served");
      }
    }
    // A newer invalidation started another read: this one is already out of date.
    if (generation !== this.generation) return;
    this.dbDeployments = loaded;
    this.router = new ModelRouter([...this.configDeployments, ...loaded.map((d) => d.deployment)]);
    this.knownNames = this.router.modelNames();
    this.reading = undefined;
    this.readFailed = false;
  }
}
