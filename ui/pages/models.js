// Models: what every replica serves — the config file's models (read-only here) and the database's (add,
// update, delete). Upstream credentials are write-only: the gateway never sends one back, only "[hidden]".
// Below them, every deployment as routing sees it (GET /debug/routing): health, cooldown and load are the
// cluster's shared state, so this table reads the same on whichever replica serves the page.
import { useEffect, useState } from "preact/hooks";
import { get, post } from "../api.js";
import { Field, fieldValue, formValues, html, LoadError, Loading, money, num, Outcome, relative, Table, useAction, useLoad, when } from "../components.js";

/** LiteLLM's price fields, in USD per token: what a request on the model is charged (none set: it costs nothing). */
const PRICES = [
  ["input_cost_per_token", "Input cost per token (USD)", "e.g. 0.00000015 ($0.15 per million tokens)"],
  ["output_cost_per_token", "Output cost per token (USD)", "e.g. 0.0000006 ($0.60 per million tokens)"],
  ["cache_read_input_token_cost", "Cache read cost per token (USD)", "Prompt tokens read from the provider's cache; empty: the input cost."],
  ["cache_creation_input_token_cost", "Cache write cost per token (USD)", "Prompt tokens written to the provider's cache; empty: the input cost."],
];
const PRICE_FIELDS = PRICES.map(([name]) => name);

/**
 * The form's litellm_params; for an update (`current`: the stored ones), only what differs from them (LiteLLM's
 * update merges what it is given over what is stored, so an empty field keeps the stored value).
 */
function paramsOf(form, current = null) {
  const v = formValues(form, { numbers: PRICE_FIELDS });
  const litellm_params = {};
  for (const f of ["model", "api_base", "api_key", ...PRICE_FIELDS]) if (v[f] !== undefined && (current === null || v[f] !== current[f])) litellm_params[f] = v[f];
  return { model_name: v.model_name, litellm_params };
}

function PriceFields({ scope, current }) {
  return PRICES.map(
    ([name, label, hint]) =>
      html`<${Field} scope=${scope} label=${label} name=${name} type="number" step="any" min="0" hint=${current ? "Empty keeps the current price." : hint} defaultValue=${fieldValue(current?.[name])} />`,
  );
}

/** The model's price per million tokens, input / output, as operators compare them; "free" when it charges nothing. */
function price(p) {
  const input = p.input_cost_per_token ?? 0;
  const output = p.output_cost_per_token ?? 0;
  if (input === 0 && output === 0) return html`<span class="muted" data-testid="price">free (no price set)</span>`;
  const perMillion = (v) => money(v * 1_000_000);
  return html`<span data-testid="price">${perMillion(input)} / ${perMillion(output)}</span>`;
}

/** The last health check: never run (checks off, or not yet), passed, or failed and why. */
function health(d) {
  const h = d.health;
  if (!h) return html`<span class="badge muted" data-testid="health">not checked</span>`;
  const at = html` <small class="muted" title=${`${when(h.checkedAt)}, by ${h.by}`}>${relative(h.checkedAt)}</small>`;
  if (h.healthy) return html`<span class="badge good" data-testid="health">healthy</span>${at}`;
  return html`<span class="badge bad" data-testid="health">unhealthy</span>${at}<br /><small data-testid="health-error">${h.error ?? "no reason given"}</small>`;
}

/** Left out of routing on every replica until its cooldown ends; whole seconds, rounded up, so never "0 s" while it holds. */
function cooldown(d) {
  if (d.cooling_ms > 0) return html`<span class="badge warn" data-testid="cooldown">cooling ${Math.ceil(d.cooling_ms / 1000)} s</span>`;
  return html`<span data-testid="cooldown">—</span>`;
}

/** The deployment's own limits, held for the whole cluster; "none" when it has none. */
function limits(d) {
  if (d.rpm === null && d.tpm === null && d.max_parallel_requests === null) return html`<span class="muted" data-testid="limits">none</span>`;
  return html`<span data-testid="limits">rpm ${num(d.rpm)} / tpm ${num(d.tpm)} / parallel ${num(d.max_parallel_requests)}</span>`;
}

/** A mock or a local upstream answers in well under a millisecond: one decimal there, so it never reads "0 ms". */
const latency = (ms) => (ms === null || ms === undefined ? "—" : `${ms < 10 ? ms.toFixed(1) : num(Math.round(ms))} ms`);

/** Whether what the table shows is the cluster's (Redis answers) or only this replica's (it does not). */
function routingSummary(r) {
  const cooling = r.deployments.filter((d) => d.cooling_ms > 0).length;
  const state = r.shared
    ? "Routing state (health, cooldowns, load) is shared by every replica."
    : "Routing state is this replica's own: Redis is out of reach, so other replicas may see it otherwise.";
  return html`<p class="summary" role="status" data-testid="routing-summary">
    ${r.shared ? "✓ " : "! "}Strategy ${r.strategy}. ${state} ${num(r.deployments.length)} ${r.deployments.length === 1 ? "deployment" : "deployments"}, ${num(cooling)} cooling down.
  </p>`;
}

/** Every deployment as the cluster routes it, refreshed every two seconds (a cooldown lasts seconds). */
function RoutingTable() {
  const routing = useLoad(() => get("/debug/routing"), []);
  useEffect(() => {
    const timer = setInterval(routing.reload, 2_000);
    return () => clearInterval(timer);
  }, [routing.reload]);
  const r = routing.data;
  return html`<div class="routing">
    <${LoadError} error=${routing.error} />
    <${Loading} load=${routing} what="the routing table" />
    ${
      r &&
      html`${routingSummary(r)}
        <${Table}
          caption="Routing: every deployment, as the cluster sees it"
          rowKey=${(d) => d.id}
          rows=${r.deployments}
          columns=${[
            { title: "Model name", cell: (d) => d.model },
            { title: "Deployment", cell: (d) => html`<code title=${`id ${d.id}`} data-testid="deployment">${d.deployment}</code>` },
            { title: "Order / weight", cell: (d) => `${d.order} / ${d.weight}` },
            { title: "Health", cell: health },
            { title: "Cooldown", cell: cooldown },
            { title: "In flight (cluster)", cell: (d) => html`<span title=${`${num(d.in_flight_here)} on this replica`} data-testid="in-flight">${num(d.in_flight)}</span>` },
            { title: "Tokens this minute", cell: (d) => html`<span data-testid="tokens">${num(d.tokens_this_minute)}</span>` },
            { title: "Limits", cell: limits },
            { title: "Latency", cell: (d) => html`<span data-testid="latency">${latency(d.latency_ms)}</span>` },
          ]}
        />`
    }
  </div>`;
}

export function ModelsPage() {
  const models = useLoad(() => get("/model/info"), []);
  const action = useAction(models.reload);
  const change = action.run;
  const [editing, setEditing] = useState(null);
  const onAdd = async (e) => {
    e.preventDefault();
    const form = e.target;
    const body = paramsOf(form);
    if (await change(() => post("/model/new", body), `Model ${body.model_name} added; every replica serves it now.`)) form.reset();
  };
  const onUpdate = async (e) => {
    e.preventDefault();
    const { litellm_params } = paramsOf(e.target, editing.litellm_params);
    if (await change(() => post("/model/update", { model_id: editing.model_info.id, litellm_params }), `Model ${editing.model_name} updated.`)) setEditing(null);
  };
  const remove = (m) => {
    if (!window.confirm(`Delete model ${m.model_name}? Requests for it will be refused on every replica.`)) return;
    change(() => post("/model/delete", { id: m.model_info.id }), `Model ${m.model_name} deleted.`);
  };
  return html`<section aria-labelledby="models-title">
    <h1 id="models-title">Models</h1>
    <details class="panel">
      <summary>Add a database model</summary>
      <form class="grid" onSubmit=${onAdd} aria-label="Add a database model">
        <${Field} label="Model name (what clients ask for)" name="model_name" required />
        <${Field} label="Upstream model" name="model" required hint="provider/model, e.g. openai/gpt-4o-mini" />
        <${Field} label="API base" name="api_base" type="url" hint="Empty: the provider's default." />
        <${Field} label="API key" name="api_key" type="password" autocomplete="off" hint="Write-only: stored sealed, never shown again." />
        <${PriceFields} scope="new" />
        <div class="actions"><button type="submit" disabled=${action.busy}>Add model</button></div>
      </form>
    </details>
    <${Outcome} action=${action} />
    <${LoadError} error=${models.error} />
    <${Loading} load=${models} what="models" />
    ${
      editing &&
      html`<form key=${editing.model_info.id} class="panel grid" onSubmit=${onUpdate} aria-label=${`Update model ${editing.model_name}`}>
        <h2>Update ${editing.model_name}</h2>
        <${Field} scope="update" label="Upstream model" name="model" placeholder=${editing.litellm_params.model} />
        <${Field} scope="update" label="API base" name="api_base" type="url" placeholder=${editing.litellm_params.api_base ?? ""} />
        <${Field} scope="update" label="New API key" name="api_key" type="password" autocomplete="off" hint="Empty keeps the stored key." />
        <${PriceFields} scope="update" current=${editing.litellm_params} />
        <div class="actions">
          <button type="submit" disabled=${action.busy}>Save</button>
          <button type="button" class="secondary" onClick=${() => setEditing(null)}>Cancel</button>
        </div>
      </form>`
    }
    ${
      models.data &&
      html`<${Table}
        caption="Models served by every replica"
        busy=${models.loading && !models.fresh}
        rowKey=${(m) => m.model_info.id ?? `config:${m.model_name}:${m.litellm_params.model}`}
        rows=${models.data.data}
        columns=${[
          { title: "Model name", cell: (m) => m.model_name },
          { title: "Upstream", cell: (m) => html`<code>${m.litellm_params.model}</code>` },
          { title: "API base", cell: (m) => m.litellm_params.api_base ?? "default" },
          { title: "API key", cell: (m) => (m.litellm_params.api_key ? "set (hidden)" : "none") },
          { title: "Price per 1M tokens (in / out)", cell: (m) => price(m.litellm_params) },
          { title: "Source", cell: (m) => (m.model_info.db_model ? html`<span class="badge">database</span>` : html`<span class="badge muted">config file</span>`) },
          {
            title: "Actions",
            cell: (m) =>
              m.model_info.db_model
                ? html`<button type="button" class="secondary small" onClick=${() => setEditing(m)}>Update</button>
                    <button type="button" class="danger small" aria-label=${`Delete ${m.model_name}`} onClick=${() => remove(m)}>Delete</button>`
                : html`<span class="muted">edit the config file</span>`,
          },
        ]}
      />`
    }
    <${RoutingTable} />
  </section>`;
}
