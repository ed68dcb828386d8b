// The cluster: every replica from the registry (each writes a heartbeat), the last event it applied, its
// listener, how long changes took to reach it, its breakers, and whether its routing state is the cluster's — so
// an operator sees at a glance that every replica is current and routes alike. A replica that stopped beating
// (killed, cut off from Postgres) is shown gone, its last report greyed, until the registry forgets it.
// Refreshed every two seconds.
import { useEffect } from "preact/hooks";
import { get } from "../api.js";
import { html, LoadError, Loading, num, relative, Table, useLoad, when } from "../components.js";

const ms = (v) => (v === null || v === undefined ? "—" : `${v} ms`);
const minutes = (v) => `${Math.round(v / 60_000)} min`;

/** Listening, or a single embedded replica, which has no other replica to hear from ("not used"). */
const listenerOk = (r) => r.listener === "listening" || r.listener === "not used";
const isCurrent = (r) => r.alive && listenerOk(r) && r.behind_events === 0;

function verdict(r) {
  if (!r.alive) return html`<span class="badge bad" data-testid="state">gone</span>`;
  if (!listenerOk(r)) return html`<span class="badge bad" data-testid="state">listener ${r.listener}</span>`;
  if (r.behind_events > 0) return html`<span class="badge warn" data-testid="state">behind ${num(r.behind_events)}</span>`;
  return html`<span class="badge good" data-testid="state">current</span>`;
}

/**
 * What a replica reported; for one that is gone, its last report, greyed and in words, never as green badges:
 * a dead replica's "listening" and "closed" say nothing about now.
 */
function reported(r, text, good, testId) {
  if (!r.alive) return html`<span class="last-report" data-testid=${testId} title="Its last report, before its heartbeats stopped">was ${text}</span>`;
  return html`<span class=${`badge ${good ? "good" : "bad"}`} data-testid=${testId}>${text}</span>`;
}

function breakers(r) {
  return Object.entries(r.breakers ?? {}).map(([name, state], i) => html`${i > 0 ? (r.alive ? " " : ", ") : ""}${reported(r, `${name} ${state}`, state === "closed", "breaker")}`);
}

/**
 * "shared": cooldowns, failures and load are the cluster's (Redis). Anything else means this replica routes on its
 * own view (no Redis, or Redis out of reach) and may send traffic where the others would not. A replica of a
 * version that does not report it says nothing.
 */
function routing(r) {
  if (!r.routing) return html`<span class="badge muted" data-testid="routing">not reported</span>`;
  return reported(r, r.routing, r.routing === "shared", "routing");
}

/** "! 2 of 3 replicas are current; 1 gone": every replica in the registry counts, the gone ones too. */
function summary(c) {
  const gone = c.replicas.filter((r) => !r.alive).length;
  const current = c.replicas.filter(isCurrent).length;
  const all = c.replicas.length;
  const ok = all > 0 && current === all;
  return `${ok ? "✓" : "!"} ${num(current)} of ${num(all)} ${all === 1 ? "replica is" : "replicas are"} current${gone > 0 ? `; ${num(gone)} gone` : ""}`;
}

export function ClusterPage() {
  const cluster = useLoad(() => get("/ui/api/cluster"), []);
  useEffect(() => {
    const timer = setInterval(cluster.reload, 2_000);
    return () => clearInterval(timer);
  }, [cluster.reload]);
  const c = cluster.data;
  return html`<section aria-labelledby="cluster-title">
    <h1 id="cluster-title">Cluster</h1>
    <${LoadError} error=${cluster.error} />
    <${Loading} load=${cluster} what="the replicas" />
    ${
      c &&
      html`<p class="summary" role="status" data-testid="cluster-summary">
          ${summary(c)} (latest event #${num(c.latest_event_id)}; heartbeats every ${c.heartbeat_interval_ms / 1000} s).
        </p>
        <${Table}
          caption="Replicas"
          rowKey=${(r) => r.replica_id}
          rowClass=${(r) => (r.alive ? undefined : "gone")}
          rows=${c.replicas}
          columns=${[
            {
              title: "Replica",
              cell: (r) =>
                html`<code class="nowrap">${r.replica_id}</code><br /><small class="muted" title=${`started ${when(r.started_at)}`}>${r.host}, pid ${r.pid}, ${r.version}, started ${relative(r.started_at)}</small>`,
            },
            { title: "State", cell: verdict },
            {
              title: "Last applied event",
              cell: (r) =>
                html`<span data-testid="applied">#${num(r.last_applied_event_id)}</span><br /><small class="muted">took <span data-testid="last-lag">${ms(r.last_event_lag_ms)}</span></small>`,
            },
            { title: "Lag p50 / p99 (recent)", cell: (r) => `${ms(r.recent_lags_ms?.p50)} / ${ms(r.recent_lags_ms?.p99)}` },
            { title: "Listener", cell: (r) => (r.alive ? r.listener : html`<span class="last-report">was ${r.listener}</span>`) },
            { title: "Breakers", cell: breakers },
            { title: "Routing", cell: routing },
            { title: "Heartbeat", cell: (r) => html`<span data-testid="heartbeat">${relative(Date.now() - r.heartbeat_age_ms)}</span>` },
          ]}
        />
        <p class="muted">
          A replica with no heartbeat for three intervals is <strong>gone</strong> (killed, or cut off from Postgres): it
          counts in the line above, and its row shows what it last reported, greyed, until it is forgotten
          ${c.forget_after_ms ? ` ${minutes(c.forget_after_ms)} after its last heartbeat` : ""}. A replica that stops
          normally leaves at once.
        </p>`
    }
  </section>`;
}
