import { fmt } from "../violations.js";
import { type AuthAnswerRule, boundFor, duringFault } from "./context.js";

/** The name model changes address (their events name this cache key). */
const MODELS = "models:all";

/**
 * Invariant 10 for database models (docs/models.md): a request for the run's database model with a key that never
 * changes is answered 200 while the model has a deployment, 404 `model_not_found` while it has none, each within
 * the bound of the change (a replica drops the database models on the event and reads them again). A 503
 * `model_store_unavailable` is the documented answer while the replica cannot vouch for its database models
 * (Postgres or its notifications unreachable).
 */
export const databaseModelFollowsItsChanges: AuthAnswerRule = (op, ctx) => {
  const { view: model, faults, options, result } = ctx;
  const violate = ctx.violate;
  const tokens = [op.token, MODELS];
  if (op.status === 503) {
    if (duringFault(faults, op, options.faultTailMs, (f) => f.postgresImpaired || f.notificationsLost)) return;
    violate("unexpected answer", `a request for ${op.model} on ${op.replica} answered 503 ${op.code ?? ""} with every store reachable`, op.complete, tokens, op.replica);
    return;
  }
  if (op.status !== 200 && !(op.status === 404 && op.code === "model_not_found")) {
    violate("unexpected answer", `a request for ${op.model} on ${op.replica} answered ${op.status} ${op.code ?? ""}`, op.complete, tokens, op.replica);
    return;
  }
  const served = op.status === 200;
  // A change's event is written before its COMMIT, which may come as late as its answer (atLatest): until then a
  // replica may rightly answer as before. (A replica whose Postgres answers slowly holds the event seconds before
  // its COMMIT lands; measuring from the event's own time would blame the others for not seeing it yet.)
  const possible = (t: number) => model.dbModelServedAt(t) === served || model.dbModelMayStillServeAsBefore(t, served);
  const points = model.dbModelPoints(); // sorted ascending
  // The last point at or before the request's start (binary search: a long run has thousands of points).
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]! <= op.invoke) lo = mid + 1;
    else hi = mid;
  }
  const firstAfterInvoke = lo;
  const duringRequest = () => {
    for (let i = firstAfterInvoke; i < points.length && points[i]! <= op.complete; i++) if (possible(points[i]!) || possible(points[i]! - 1e-3)) return true;
    return false;
  };
  let staleness = Number.POSITIVE_INFINITY;
  if (possible(op.invoke) || possible(op.complete) || duringRequest()) {
    staleness = 0;
  } else {
    for (let i = firstAfterInvoke - 1; i >= 0; i--) {
      if (possible(points[i]! - 1e-3)) {
        staleness = op.invoke - points[i]!;
        break;
      }
    }
  }
  const inFault = duringFault(faults, op, options.faultTailMs, () => true);
  (inFault ? result.staleness.fault : result.staleness.normal).push(Number.isFinite(staleness) ? staleness : -1);
  const bound = boundFor(op, faults, options);
  if (staleness > bound) {
    violate(
      served ? "served a deleted model" : "refused a model that exists",
      `${op.replica} answered ${op.status} for ${op.model} (request ${fmt(op.invoke)}–${fmt(op.complete)}); ${Number.isFinite(staleness) ? `the model last agreed ${Math.round(staleness)} ms before the request (bound ${Math.round(bound)} ms)` : "the model never agreed"}`,
      op.complete,
      tokens,
      op.replica,
    );
  }
};
