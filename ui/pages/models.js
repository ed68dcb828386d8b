// Models: what every replica serves — the config file's models (read-only here) and the database's (add,
// update, delete). Upstream credentials are write-only: the gateway never sends one back, only "[hidden]".
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { Field, formValues, html, LoadError, Outcome, Table, useAction, useLoad } from "../components.js";

function paramsOf(form) {
  const v = formValues(form);
  const litellm_params = {};
  for (const f of ["model", "api_base", "api_key"]) if (v[f] !== undefined) litellm_params[f] = v[f];
  return { model_name: v.model_name, litellm_params };
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
    const { litellm_params } = paramsOf(e.target);
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
        <div class="actions"><button type="submit" disabled=${action.busy}>Add model</button></div>
      </form>
    </details>
    <${Outcome} action=${action} />
    <${LoadError} error=${models.error} />
    ${
      editing &&
      html`<form class="panel grid" onSubmit=${onUpdate} aria-label=${`Update model ${editing.model_name}`}>
        <h2>Update ${editing.model_name}</h2>
        <${Field} scope="update" label="Upstream model" name="model" placeholder=${editing.litellm_params.model} />
        <${Field} scope="update" label="API base" name="api_base" type="url" placeholder=${editing.litellm_params.api_base ?? ""} />
        <${Field} scope="update" label="New API key" name="api_key" type="password" autocomplete="off" hint="Empty keeps the stored key." />
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
        rowKey=${(m) => m.model_info.id ?? `config:${m.model_name}:${m.litellm_params.model}`}
        rows=${models.data.data}
        columns=${[
          { title: "Model name", cell: (m) => m.model_name },
          { title: "Upstream", cell: (m) => html`<code>${m.litellm_params.model}</code>` },
          { title: "API base", cell: (m) => m.litellm_params.api_base ?? "default" },
          { title: "API key", cell: (m) => (m.litellm_params.api_key ? "set (hidden)" : "none") },
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
  </section>`;
}
