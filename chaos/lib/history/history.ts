/**
 * The recorded history of a run: every request a client made, with its invoke and complete times on the
 * checker's one clock and its answer. Times are `performance.timeOrigin + performance.now()`: monotonic within
 * the run and on the same scale as the database's `clock_timestamp()` on this host, so an event's commit time
 * can be placed among the requests.
 */
import { performance } from "node:perf_hooks";

export const checkerNow = (): number => performance.timeOrigin + performance.now();

export type AdminKind =
  | "generate"
  | "regenerate"
  | "end_grace"
  | "update"
  | "block"
  | "unblock"
  | "delete"
  | "reset_spend"
  | "team_block"
  | "team_unblock"
  | "team_new"
  | "team_models"
  | "team_delete"
  | "user_new"
  | "user_delete"
  | "user_models"
  | "model_new"
  | "model_update"
  | "model_delete";

/** The kind of event a change of this kind commits (models and user updates have their own names). */
export function eventKindOf(kind: AdminKind): string {
  if (kind === "model_new" || kind === "model_update" || kind === "model_delete") return "model_change";
  if (kind === "user_models") return "user_update";
  if (kind === "team_models") return "team_update";
  return kind;
}

export interface AdminOp {
  type: "admin";
  id: number;
  kind: AdminKind;
  replica: string;
  invoke: number;
  complete: number;
  /** HTTP status; 0 when the connection failed (the replica died or was cut off): outcome unknown. */
  status: number;
  code?: string;
  /** Token hashes the request named (delete may name several; generate none). */
  addressed: string[];
  grace?: string;
  models?: string[];
  /** generate: the team the key joins; team_new / team_block / team_unblock / team_models / team_delete: the team. */
  team?: string;
  /** generate: the user the key belongs to; user_new / user_delete / user_models: the user. */
  user?: string;
  /** model_new (from its answer), model_update, model_delete: the database model's id. */
  modelId?: string;
  /** Event ids from the Gatehouse-Event-Id header of a 2xx answer. */
  eventIds: number[];
  /** From a 2xx answer: the new key's token and key_id (generate, regenerate), revoke_at (regenerate). */
  newToken?: string;
  keyId?: string;
  revokeAt?: number;
  /** end_grace: the tokens it revoked. */
  revoked?: string[];
  /** Part of a pair fired at the same key from two replicas at once. */
  raced?: boolean;
  /** A request with invalid input on purpose (it must be a 400 and change nothing). */
  invalid?: boolean;
}

export interface AuthOp {
  type: "auth";
  id: number;
  replica: string;
  invoke: number;
  complete: number;
  status: number;
  code?: string;
  token: string;
  /** The model asked for, when it is not the run's probe model: a database model added and deleted during the run. */
  model?: string;
}

export type Op = AdminOp | AuthOp;

/** A committed change, from the event table after the run. */
export interface CommittedEvent {
  id: number;
  kind: string;
  tokens: string[];
  /** Commit time (the event row's clock_timestamp(), taken right before COMMIT), on the checker's clock. */
  at: number;
}

/** A fault as it was injected: [start, end] on the checker's clock. */
export interface FaultWindow {
  name: string;
  start: number;
  end: number;
  /** Postgres could not be reached (a 503 from a replica is then the documented answer). */
  postgresImpaired: boolean;
  /** Postgres and Redis both unreachable: replicas serve what they hold (fail static), however old. */
  partition: boolean;
  /** Notifications may be lost: the hard bound applies instead of the normal one. */
  notificationsLost: boolean;
}

export class History {
  readonly ops: Op[] = [];
  readonly faults: FaultWindow[] = [];
  /** When each replica (by name) was last (re)started: its caches start empty then. */
  readonly replicaStarts: Array<{ replica: string; at: number }> = [];
  private nextId = 1;

  record<T extends Op>(op: Omit<T, "id">): T {
    const full = { ...op, id: this.nextId++ } as T;
    this.ops.push(full);
    return full;
  }
}
