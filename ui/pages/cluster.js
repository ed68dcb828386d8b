// The cluster: every replica from the registry (each writes a heartbeat), the last event it applied, its
// listener, how long changes took to reach it, its breakers, and whether its routing state is the cluster's — so
// an operator sees at a glance that every replica is current and routes alike. Refreshed every two seconds.
import { useEffect } from "preact/hooks";
import { get } from "../api.js";
import { html, LoadError, num, relative, Table, useLoad, when } from "../components.js";

const ms = (v) => (v === null || v === undefined ? "—" : `${v} ms`);

/** Listening, or a single embedded replica, which has no other replica to hear from ("not used"). */
const listenerOk = (r) => r.listener === "listening" || r.listener === "not used";

function verdict(r) {
  if (!r.alive) return html`<span class="badge bad">no heartbeat</span>`;
  if (!listenerOk(r)) return html`<span class="badge bad">listener ${r.listener}</span>`;
  if (r.behind_events > 0) return html`<span class="badge warn">behind ${num(r.behind_events)}</span>`;
  return html`<span class="badge good">current</span>`;
}

function breakers(r) {
  const b = r.breakers ?? {};
  return Object.entries(b).map(([name, state]) => html`<span class=${`badge ${state === "closed" ? "good" : "bad"}`}>${name} ${state}</span> `);
}

/**
 * "shared": cooldowns, failures and load are the cluster's (Redis). Anything else means this replica routes on its
 * own view (no Redis, or Redis out of reach) and may send traffic where the others would not. A replica of a
 * version that does not report it says nothing.
 */
function routing(r) {
  if (!r.routing) return html`<span class="badge muted" data-testid="routing">not reported</span>`;
  return html`<span class=${`badge ${r.routing === "shared" ? "good" : "bad"}`} data-testid="routing">${r.routing}</span>`;
}

export function ClusterPage() {
  const cluster = useLoad(() => get("/ui/api/cluster"), []);
  useEffect(() => {
    const timer = setInterval(cluster.reload, 2_000);
    return () => clearInterval(timer);
  }, [cluster.reload]);
  const c = cluster.data;
  const alive = c ? c.replicas.filter((r) => r.alive) : [];
  const current = alive.filter((r) => listenerOk(r) && r.behind_events === 0);
  return html`<section aria-labelledby="cluster-title">
    <h1 id="cluster-title">Cluster</h1>
    <${LoadError} error=${cluster.error} />
    ${
      c &&
      html`<p class="summary" role="status" data-testid="cluster-summary">
          ${current.length === alive.length && alive.length > 0 ? "✓ " : "! "}${num(current.length)} of ${num(alive.length)} live replicas are current
          (latest event #${num(c.latest_event_id)}; heartbeats every ${c.heartbeat_interval_ms / 1000} s).
        </p>
        <${Table}
          caption="Replicas"
          rowKey=${(r) => r.replica_id}
          rows=${c.replicas}
          columns=${[
            { title: "Replica", cell: (r) => html`<code>${r.replica_id}</code>` },
            { title: "State", cell: verdict },
            { title: "Last applied event", cell: (r) => html`<span data-testid="applied">#${num(r.last_applied_event_id)}</span>` },
            { title: "Last change took", cell: (r) => html`<span data-testid="last-lag">${ms(r.last_event_lag_ms)}</span>` },
            { title: "Lag p50 / p99 (recent)", cell: (r) => `${ms(r.recent_lags_ms?.p50)} / ${ms(r.recent_lags_ms?.p99)}` },
            { title: "Listener", cell: (r) => r.listener },
            { title: "Breakers", cell: breakers },
            { title: "Routing", cell: routing },
            { title: "Heartbeat", cell: (r) => relative(Date.now() - r.heartbeat_age_ms) },
            { title: "Started", cell: (r) => html`<span title=${when(r.started_at)}>${relative(r.started_at)}</span>` },
            { title: "Host, pid, version", cell: (r) => `${r.host}, ${r.pid}, ${r.version}` },
          ]}
        />`
    }
  </section>`;
}
