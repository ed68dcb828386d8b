// Small building blocks every page shares: forms, tables, notices, the one-time key display, the rotation
// timeline and the bar chart. Plain Preact + htm: no build step, nothing fetched from outside the gateway.
import htm from "htm";
import { h } from "preact";
import { useCallback, useEffect, useId, useLayoutEffect, useRef, useState } from "preact/hooks";

export const html = htm.bind(h);

/**
 * Runs `load` now and whenever `deps` change; `reload()` runs it again. `fresh` is false while what `data` holds
 * was loaded for other `deps` (another page, another search) or nothing is loaded yet: the page shows it is
 * loading then. A reload of the same list (a refresh, the cluster page's timer) keeps showing the data it has.
 */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true, fresh: false });
  const generation = useRef(0);
  const run = useCallback((fresh) => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true, fresh: fresh && s.data !== null }));
    load().then(
      (data) => mine === generation.current && setState({ data, error: null, loading: false, fresh: true }),
      (error) => mine === generation.current && setState({ data: null, error, loading: false, fresh: true }),
    );
  }, deps);
  useEffect(() => run(false), [run]);
  const reload = useCallback(() => run(true), [run]);
  return { ...state, reload };
}

/** "Loading keys…" while a list loads for the first time or for new criteria; announced to screen readers. */
export function Loading({ load, what }) {
  return load.loading && !load.fresh ? html`<p class="loading-note" role="status" aria-live="polite" data-testid="loading">Loading ${what}…</p>` : null;
}

/**
 * Runs `action`, shows its outcome, and after a success calls `afterChange` (to reload what it changed). A failure
 * leaves the form as it was (the gateway applied nothing) and resolves to undefined.
 */
export function useAction(afterChange) {
  const [state, setState] = useState({ busy: false, error: null, done: null });
  const run = async (action, doneMessage) => {
    setState({ busy: true, error: null, done: null });
    try {
      const result = await action();
      setState({ busy: false, error: null, done: typeof doneMessage === "function" ? doneMessage(result) : doneMessage });
      afterChange?.();
      return result;
    } catch (error) {
      setState({ busy: false, error, done: null });
      return undefined;
    }
  };
  return { ...state, run, clear: () => setState({ busy: false, error: null, done: null }) };
}

export function Outcome({ action }) {
  if (action.error) return html`<p class="notice error" role="alert">${action.error.message}</p>`;
  if (action.done) return html`<p class="notice ok" role="status">${action.done}</p>`;
  return null;
}

export function LoadError({ error }) {
  return error ? html`<p class="notice error" role="alert">Could not load: ${error.message}</p>` : null;
}

/** The id of a form's field: `scope` tells apart two forms on one page that share field names. */
const fieldId = (scope, name) => (scope ? `f-${scope}-${name}` : `f-${name}`);

/** A labelled input, so every field has a label a screen reader announces. */
export function Field({ label, name, hint, scope, ...input }) {
  const id = fieldId(scope, name);
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input id=${id} name=${name} ...${input} aria-describedby=${hint ? `${id}-hint` : undefined} />
    ${hint ? html`<small id=${`${id}-hint`}>${hint}</small>` : null}
  </div>`;
}

export function Select({ label, name, options, scope, ...select }) {
  const id = fieldId(scope, name);
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} name=${name} ...${select}>${options.map(([value, text]) => html`<option value=${value}>${text}</option>`)}</select>
  </div>`;
}

/** The form's fields as an object: empty fields left out, numbers as numbers, lists split on commas. */
export function formValues(form, { numbers = [], lists = [] } = {}) {
  const out = {};
  for (const [name, raw] of new FormData(form)) {
    const value = String(raw).trim();
    if (value === "") continue;
    if (numbers.includes(name)) out[name] = Number(value);
    else if (lists.includes(name))
      out[name] = value
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else out[name] = value;
  }
  return out;
}

/**
 * The fields of an edit form that differ from the values it was filled with (`current`): an emptied field is null
 * (an empty list for a list): that limit removed. Untouched fields are left out, so saving one limit never sends
 * (and applies again) the others.
 */
export function changedValues(form, current, { numbers = [], lists = [] } = {}) {
  const out = {};
  for (const [name, raw] of new FormData(form)) {
    const text = String(raw).trim();
    const before = current[name] ?? null;
    if (lists.includes(name)) {
      const value = text
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      if (value.join("\0") !== (before ?? []).join("\0")) out[name] = value;
      continue;
    }
    const value = text === "" ? null : numbers.includes(name) ? Number(text) : text;
    if (value !== before) out[name] = value;
  }
  return out;
}

/** A value for a form field to start from: "" for none, a list joined with commas. */
export const fieldValue = (v) => (v === null || v === undefined ? "" : Array.isArray(v) ? v.join(", ") : String(v));

/** A level's spend has reached its budget: the gateway refuses its requests (the limiter's rule, spend ≥ budget). */
export const overBudget = (spend, maxBudget) => maxBudget !== null && maxBudget !== undefined && spend >= maxBudget;

/**
 * A table; `busy`: what it shows is being replaced (dimmed, and aria-busy for screen readers); `rowClass`: a class
 * for a row that reads differently (a gone replica's, greyed).
 */
export function Table({ caption, columns, rows, rowKey, rowClass = () => undefined, empty = "Nothing here yet.", busy = false }) {
  return html`<div class=${`table-wrap${busy ? " busy" : ""}`} tabindex="0" role="region" aria-label=${caption}>
    <table aria-busy=${busy ? "true" : undefined}>
      <caption>${caption}</caption>
      <thead><tr>${columns.map((c) => html`<th scope="col">${c.title}</th>`)}</tr></thead>
      <tbody>
        ${rows.length === 0 ? html`<tr><td colspan=${columns.length}>${empty}</td></tr>` : rows.map((r) => html`<tr key=${rowKey(r)} class=${rowClass(r)}>${columns.map((c) => html`<td data-label=${c.title}>${c.cell(r)}</td>`)}</tr>`)}
      </tbody>
    </table>
  </div>`;
}

/** A plaintext key, shown once: after generate or regenerate, never again (the gateway keeps only its hash). */
export function OneTimeKey({ title, plaintext, onClose, children }) {
  const [copied, setCopied] = useState("");
  const input = useRef(null);
  // Two displays may show at once (a key generated, another regenerated): each its own ids.
  const id = useId();
  useEffect(() => input.current?.focus(), []);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(plaintext);
      setCopied("Copied to the clipboard.");
    } catch {
      input.current?.select();
      setCopied("Selected: press Ctrl+C (or ⌘C) to copy.");
    }
  };
  // A text area, not an input: the whole key wraps into view at any width (an input would scroll part of it away).
  return html`<section class="one-time" aria-labelledby=${`${id}-title`}>
    <h3 id=${`${id}-title`}>${title}</h3>
    <p><strong>Copy it now: it is shown this once.</strong> The gateway stores only its hash and cannot show it again.</p>
    <div class="copy-row">
      <label for=${`${id}-key`} class="visually-hidden">The new key</label>
      <textarea id=${`${id}-key`} class="one-time-key" ref=${input} readonly rows="2" spellcheck="false" autocomplete="off" value=${plaintext} onFocus=${(e) => e.target.select()}></textarea>
      <button type="button" onClick=${copy}>Copy</button>
    </div>
    <p role="status" class="muted">${copied}</p>
    ${children}
    <button type="button" class="secondary" onClick=${onClose}>I have copied it — hide the key</button>
  </section>`;
}

export const money = (n) => (n === null || n === undefined ? "—" : `$${Number(n).toFixed(Number(n) !== 0 && Math.abs(n) < 0.01 ? 6 : 2)}`);
export const num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
export const when = (t) => (t ? new Date(t).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" }) : "—");

/** "in 59 min", "3 s ago": a time relative to now. */
export function relative(t, now = Date.now()) {
  if (!t) return "never";
  const ms = new Date(t).getTime() - now;
  const abs = Math.abs(ms);
  const text =
    abs < 60_000
      ? `${Math.round(abs / 1000)} s`
      : abs < 3_600_000
        ? `${Math.round(abs / 60_000)} min`
        : abs < 172_800_000
          ? `${(abs / 3_600_000).toFixed(1)} h`
          : `${Math.round(abs / 86_400_000)} days`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

/** A refusal's code in a few words: the key's status badge and the timeline say why a token does not work. */
const REFUSED = {
  key_blocked: "blocked",
  key_expired: "expired",
  key_revoked: "grace ended",
  budget_exceeded: "over budget",
  team_blocked: "team blocked",
  team_deleted: "team deleted",
  user_deleted: "user deleted",
};
export const refusedAs = (refusal) => REFUSED[refusal.code] ?? refusal.code;

/**
 * A key's standing as the gateway decides it (the API's `usable` and `refusal`, by the request path's own rules:
 * blocked, expired, team blocked or deleted, user deleted, a budget spent): "active", or why it is refused.
 */
export function KeyStatus({ k }) {
  if (k.usable) return html`<span class="badge good">active</span>`;
  return html`<span class="badge bad" title=${k.refusal.message}>${refusedAs(k.refusal)}</span>`;
}

/**
 * The validity windows of a key's tokens on one time axis: each old token from its rotation until its revoke_at,
 * the current token from its last rotation on (open-ended unless the key expires). Whether a token is valid now
 * is the gateway's word for it (`usable`), never worked out here from the window alone: a blocked key, a spent
 * budget or a blocked team refuses a token inside its window. Text beside each bar says the same, for screen
 * readers and for anyone who does not read charts.
 */
export function Timeline({ windows, now = Date.now() }) {
  if (windows.length === 0) return null;
  const start = Math.min(now - 60_000, ...windows.map((w) => new Date(w.from).getTime()));
  const ends = windows.map((w) => (w.to ? new Date(w.to).getTime() : null)).filter((t) => t !== null);
  const end = Math.max(now + 60_000, ...ends) + (Math.max(now + 60_000, ...ends) - start) * 0.15;
  const pct = (t) => `${(((t - start) / (end - start)) * 100).toFixed(2)}%`;
  return html`<figure class="timeline">
    <figcaption>Which tokens of this key authenticate, and until when</figcaption>
    <ol>
      ${windows.map((w) => {
        const from = new Date(w.from).getTime();
        const to = w.to ? new Date(w.to).getTime() : end;
        const window = w.to ? `until ${when(w.to)} (${relative(w.to, now)})` : "with no end set";
        return html`<li class=${`lane ${w.kind}${w.usable ? "" : " refused"}`} data-token=${w.label}>
          <span class="lane-label">${w.label} <em>${w.kind === "current" ? "current token" : "old token, in grace"}</em></span>
          <span class="lane-track" aria-hidden="true">
            <span class="bar" style=${`left:${pct(from)};width:calc(${pct(to)} - ${pct(from)})`}></span>
            <span class="now" style=${`left:${pct(now)}`}></span>
          </span>
          <span class="lane-text" title=${w.refusal?.message}>${w.usable ? `valid now, ${window}` : `not valid now (${refusedAs(w.refusal)}); its window runs ${window}`}</span>
        </li>`;
      })}
    </ol>
  </figure>`;
}

const PALETTE = ["#1d4ed8", "#b45309", "#047857", "#9d174d", "#6d28d9", "#525252"];

/** Day labels on the x axis are "MM-DD": this many pixels each, with room between them. */
const DAY_LABEL_PX = 48;

/**
 * Stacked bars per day, one colour per series; the same numbers are in the table under the chart. Drawn at the
 * width it is given (one unit of the drawing is one pixel), so its labels keep their size on a phone instead of
 * shrinking with the whole picture, and only as many day labels as fit are written.
 */
export function BarChart({ days, series, label }) {
  const box = useRef(null);
  // Unknown until the box is laid out (before the first paint): nothing is drawn at a width it does not have.
  const [width, setWidth] = useState(null);
  useLayoutEffect(() => {
    const measure = (w) => setWidth(Math.max(240, Math.round(w)));
    measure(box.current.clientWidth);
    const observer = new ResizeObserver(([entry]) => measure(entry.contentRect.width));
    observer.observe(box.current);
    return () => observer.disconnect();
  }, []);
  if (width === null) return html`<figure class="chart" ref=${box}></figure>`;
  const height = 220;
  const totals = days.map((d) => series.reduce((sum, s) => sum + (s.values[d] ?? 0), 0));
  const max = Math.max(...totals, 1e-9);
  // Room on the left for the largest amount, written at 12 px (about 7 px a character); on the right for half of
  // the last day's label.
  const pad = { left: Math.max(40, 12 + money(max).length * 7), right: DAY_LABEL_PX / 2, bottom: 28, top: 12 };
  const band = (width - pad.left - pad.right) / Math.max(days.length, 1);
  const labelEvery = Math.max(1, Math.ceil(DAY_LABEL_PX / band));
  return html`<figure class="chart" ref=${box}>
    <svg viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height} role="img" aria-label=${label}>
      <line x1=${pad.left} y1=${height - pad.bottom} x2=${width - pad.right} y2=${height - pad.bottom} class="axis" />
      <text x=${pad.left - 6} y=${pad.top + 4} text-anchor="end" class="tick">${money(max)}</text>
      <text x=${pad.left - 6} y=${height - pad.bottom} text-anchor="end" class="tick">$0</text>
      ${days.map((d, i) => {
        let y = height - pad.bottom;
        return html`<g>
          ${series.map((s, si) => {
            const v = s.values[d] ?? 0;
            const hgt = (v / max) * (height - pad.bottom - pad.top);
            y -= hgt;
            return v > 0
              ? html`<rect x=${pad.left + i * band + band * 0.15} y=${y} width=${band * 0.7} height=${hgt} fill=${PALETTE[si % PALETTE.length]}><title>${`${d} · ${s.name}: ${money(v)}`}</title></rect>`
              : null;
          })}
          ${(days.length - 1 - i) % labelEvery === 0 ? html`<text x=${pad.left + i * band + band / 2} y=${height - 8} text-anchor="middle" class="tick day">${d.slice(5)}</text>` : null}
        </g>`;
      })}
    </svg>
    <figcaption class="legend">
      ${series.map((s, si) => html`<span><i style=${`background:${PALETTE[si % PALETTE.length]}`}></i>${s.name}</span>`)}
    </figcaption>
  </figure>`;
}

export function Pager({ page, totalPages, onPage, label }) {
  const [target, setTarget] = useState("");
  return html`<nav class="pager" aria-label=${label}>
    <button type="button" disabled=${page <= 1} onClick=${() => onPage(page - 1)}>Previous</button>
    <span>Page ${num(page)} of ${num(Math.max(totalPages, 1))}</span>
    <button type="button" disabled=${page >= totalPages} onClick=${() => onPage(page + 1)}>Next</button>
    <form class="inline" onSubmit=${(e) => {
      e.preventDefault();
      const n = Math.min(Math.max(1, Number(target) || 1), Math.max(totalPages, 1));
      onPage(n);
    }}>
      <label for="go-to-page">Go to page</label>
      <input id="go-to-page" type="number" min="1" max=${Math.max(totalPages, 1)} value=${target} onInput=${(e) => setTarget(e.target.value)} />
      <button type="submit">Go</button>
    </form>
  </nav>`;
}
