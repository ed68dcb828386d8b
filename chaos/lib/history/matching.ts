import { eventKindOf, type AdminOp, type CommittedEvent } from "./history.js";

/**
 * Which request each committed change belongs to. Event ids are issued again after a failover: an event is its
 * generation and its id, and an answer's id names the event of that id that committed during the request.
 */
export interface Matching {
  /** The request each change belongs to, by eventKey; a lost change re-run by its request has an attempt of its own. */
  owner: Map<string, AdminOp>;
  /** The event that issued each new token (a generate's key, a regenerate's new token). */
  byNewToken: Map<string, CommittedEvent>;
  /** The requests some committed change belongs to. */
  requests: Set<AdminOp>;
}

export const generationOf = (e: CommittedEvent) => e.gen ?? 0;
/** When its row was written (before COMMIT). */
export const writtenAt = (e: CommittedEvent) => e.writtenAt ?? e.at;
export const eventKey = (e: CommittedEvent) => `${generationOf(e)}:${e.id}`;

/**
 * Matches every committed change to a request: first by what answered requests say (their event ids, the token a
 * generate or regenerate issued), then a change no answer names to a request whose outcome its client never learnt,
 * and a change its primary lost to the request that made it again on the survivor. Fills in what the matched
 * request could not tell (the new token of a request whose answer was lost). A change no request explains is
 * handed to `unexplained` as soon as it is found, while the requests are as matching has left them so far.
 */
export function matchChanges(admin: AdminOp[], events: CommittedEvent[], slack: number, unexplained: (e: CommittedEvent) => void): Matching {
  const eventsById = new Map<number, CommittedEvent[]>();
  for (const e of events) eventsById.set(e.id, [...(eventsById.get(e.id) ?? []), e]);
  const owner = new Map<string, AdminOp>();
  /** The newest generation whose event each request claimed. */
  const claimedGen = new Map<AdminOp, number>();
  const claim = (e: CommittedEvent, op: AdminOp) => {
    if (owner.has(eventKey(e))) return;
    owner.set(eventKey(e), op);
    claimedGen.set(op, Math.max(claimedGen.get(op) ?? 0, generationOf(e)));
  };
  const byNewToken = new Map<string, CommittedEvent>();
  for (const e of events) {
    if (e.kind === "regenerate") byNewToken.set(e.tokens[1]!, e);
    if (e.kind === "generate") byNewToken.set(e.tokens[0]!, e);
  }
  // A key's first token, for each token a rotation issued: a request that named a token a rotation then replaced
  // waits for the rotation and acts on the key as it committed, under its new token (store/key-store.ts lockKeys).
  const rotatedFrom = new Map<string, string>();
  for (const e of events) if (e.kind === "regenerate" && e.tokens[0] !== undefined && e.tokens[1] !== undefined) rotatedFrom.set(e.tokens[1], e.tokens[0]);
  const firstTokenOf = (token: string) => {
    let t = token;
    for (let hops = 0; rotatedFrom.has(t) && hops < rotatedFrom.size; hops++) t = rotatedFrom.get(t)!;
    return t;
  };
  const namesItsKey = (o: AdminOp, e: CommittedEvent) => {
    const keys = new Set(e.tokens.map(firstTokenOf));
    return o.addressed.some((t) => keys.has(firstTokenOf(t)));
  };
  /** How far a change's commit lies outside a request's span (0 inside). */
  const distance = (e: CommittedEvent, op: AdminOp) => Math.max(0, op.invoke - e.at, writtenAt(e) - op.complete);
  // An answered id names an event of the request's own kind that, for a rotation or a new key, issued the token
  // the answer gave. A promoted standby issues ids again: the id of a change lost unheard with its primary may
  // name another request's change on the survivor, moments later.
  const mayBeItsEvent = (e: CommittedEvent, op: AdminOp) =>
    eventKindOf(op.kind) === e.kind &&
    !(op.newToken && op.kind === "generate" && e.tokens[0] !== op.newToken) &&
    !(op.newToken && op.kind === "regenerate" && e.tokens[1] !== op.newToken);
  for (const op of admin) {
    if (op.status < 200 || op.status >= 300) continue;
    for (const id of op.eventIds) {
      const candidates = (eventsById.get(id) ?? []).filter((e) => mayBeItsEvent(e, op));
      const e = candidates.reduce<CommittedEvent | undefined>((best, c) => (!best || distance(c, op) < distance(best, op) ? c : best), undefined);
      // An id whose event of this request was lost unheard may name another primary's event, seconds away.
      if (e && distance(e, op) <= 2_000) claim(e, op);
    }
    if ((op.kind === "regenerate" || op.kind === "generate") && op.newToken) {
      const e = byNewToken.get(op.newToken);
      if (e) claim(e, op);
    }
  }
  // Events no answered request explains: a request whose outcome the client never learnt (connection lost,
  // 5xx) of the same kind, naming a token of the change, running when it committed.
  const unknownOutcome = admin.filter((o) => o.status === 0 || o.status >= 500);
  const answered = admin.filter((o) => o.status >= 200 && o.status < 300);
  for (const e of events) {
    if (owner.has(eventKey(e)) || e.kind === "expiry") continue;
    const explains = (o: AdminOp) =>
      eventKindOf(o.kind) === e.kind &&
      writtenAt(e) >= o.invoke - slack &&
      writtenAt(e) <= o.complete + 250 &&
      // An end_grace event names the tokens it revoked, not the one the request named; a change of a key rotated
      // while the request waited names the key's new token.
      (o.addressed.some((t) => e.tokens.includes(t)) || !!o.revoked?.some((t) => e.tokens.includes(t)) || o.kind === "generate" || namesItsKey(o, e));
    const candidate = unknownOutcome.find(explains);
    if (candidate) {
      claim(e, candidate);
      if (candidate.kind === "regenerate") candidate.newToken = e.tokens[1];
      if (candidate.kind === "generate") candidate.newToken = e.tokens[0];
      continue;
    }
    // A change its primary lost, of a request answered from the new primary: the connection died during COMMIT,
    // the replica found the change absent from the survivor and made it again. The lost one was an attempt of that
    // request, with its own new token (a rotation, a key) if it made one.
    // Or the re-run was refused there (4xx): the surviving history had the key in another state — deleted, never
    // made, made by another lost change — and the request was answered as that history says.
    const retried = e.lost
      ? (answered.find((o) => explains(o) && (claimedGen.get(o) ?? -1) > generationOf(e)) ?? admin.find((o) => o.status >= 400 && o.status < 500 && !o.invalid && explains(o)))
      : undefined;
    if (retried) {
      const attempt: AdminOp = { ...retried, status: 200, eventIds: [e.id] };
      if (e.kind === "regenerate") attempt.newToken = e.tokens[1];
      if (e.kind === "generate") Object.assign(attempt, { newToken: e.tokens[0], keyId: `lost:${eventKey(e)}` });
      claim(e, attempt);
      continue;
    }
    unexplained(e);
  }
  return { owner, byNewToken, requests: new Set(owner.values()) };
}
