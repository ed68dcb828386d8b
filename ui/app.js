// The admin UI's shell: the session (logged in or not), the navigation, and which page shows. Pages live in
// pages/; each reads and changes the gateway through the admin API only (api.js).
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { get, post, setSession } from "./api.js";
import { html } from "./components.js";
import { ClusterPage } from "./pages/cluster.js";
import { KeysPage } from "./pages/keys.js";
import { ModelsPage } from "./pages/models.js";
import { SpendPage } from "./pages/spend.js";
import { TeamsPage } from "./pages/teams.js";
import { UsersPage } from "./pages/users.js";

const PAGES = [
  { path: "keys", title: "Keys", page: KeysPage },
  { path: "teams", title: "Teams", page: TeamsPage },
  { path: "users", title: "Users", page: UsersPage },
  { path: "models", title: "Models", page: ModelsPage },
  { path: "spend", title: "Spend", page: SpendPage },
  { path: "cluster", title: "Cluster", page: ClusterPage },
];

/**
 * The page and what it shows, from the address: `#/keys`, or `#/keys/<key_id>` for one key (so a reload, a
 * bookmark or a link opens that key). An unknown page is the keys page.
 */
function currentRoute() {
  const [path = "", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  if (!PAGES.some((p) => p.path === path)) return { path: "keys", param: null };
  return { path, param: rest.length > 0 && rest[0] !== "" ? decodeURIComponent(rest.join("/")) : null };
}

function Login({ reason, onLoggedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await post("/ui/api/login", { master_key: new FormData(e.target).get("master_key") });
      e.target.reset();
      onLoggedIn(session);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  // The "where is the master key" paragraphs are one line each: htm drops the white space of a line break next to
  // an element, which would run words into the names beside them.
  return html`<main class="login" id="main">
    <h1>Gatehouse admin</h1>
    ${reason ? html`<p class="notice" role="status">${reason}</p>` : null}
    <form onSubmit=${submit}>
      <div class="field">
        <label for="master-key">Master key</label>
        <input id="master-key" name="master_key" type="password" autocomplete="current-password" aria-describedby="master-key-hint" required autofocus />
        <small id="master-key-hint">Only the master key logs in; a virtual key cannot.</small>
      </div>
      <details class="where-key">
        <summary>Where is the master key?</summary>
        <p>It is the key the gateway was started with: <code>GATEHOUSE_MASTER_KEY</code> in its environment, or <code>general_settings.master_key</code> in its config file.</p>
        <p>With neither set, the gateway generated one at its first start and keeps it in the file <code>master_key</code> in its data directory (<code>GATEHOUSE_DATA_DIR</code>, or <code>gatehouse_settings.data_dir</code>; by default <code>.gatehouse</code> in the directory it was started from, so <code>.gatehouse/master_key</code>). Its start-up log names the file, never the key.</p>
      </details>
      ${error ? html`<p class="notice error" role="alert">${error}</p>` : null}
      <button type="submit" disabled=${busy}>${busy ? "Logging in…" : "Log in"}</button>
    </form>
  </main>`;
}

function App() {
  const [session, setSessionState] = useState(undefined); // undefined: not known yet
  const [reason, setReason] = useState(null);
  const [route, setRoute] = useState(currentRoute());

  const ended = (error) => {
    setSession(null);
    setSessionState(null);
    // session_expired: the session row is gone (a logout on any replica, its end, a new master key); otherwise
    // this browser holds no session at all (its cookie was cleared).
    setReason(error ? (error.code === "session_expired" ? `You were logged out: ${error.message}` : "You are not logged in.") : null);
  };
  const loggedIn = (s) => {
    setSession(s, ended);
    setReason(null);
    setSessionState(s);
  };

  useEffect(() => {
    get("/ui/api/session").then(loggedIn, () => setSessionState(null));
    const onHash = () => setRoute(currentRoute());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  if (session === undefined) return html`<p class="loading">Loading…</p>`;
  if (session === null) return html`<${Login} reason=${reason} onLoggedIn=${loggedIn} />`;

  const logout = async () => {
    try {
      await post("/ui/api/logout");
    } finally {
      ended(null);
      setReason("You have logged out, on every replica.");
    }
  };
  const { path, param } = route;
  const Page = PAGES.find((p) => p.path === path).page;
  return html`<div class="shell">
    <a
      class="skip"
      href="#main"
      onClick=${(e) => {
        // The hash names the page here: moving focus, not the hash, keeps the reader on this page.
        e.preventDefault();
        document.getElementById("main")?.focus();
      }}
      >Skip to content</a
    >
    <header>
      <span class="brand">Gatehouse</span>
      <nav aria-label="Sections">
        <ul>
          ${PAGES.map((p) => html`<li><a href=${`#/${p.path}`} aria-current=${p.path === path ? "page" : undefined}>${p.title}</a></li>`)}
        </ul>
      </nav>
      <span class="replica" title="The replica that served this page">replica ${session.replica_id}</span>
      <button type="button" class="secondary" onClick=${logout}>Log out</button>
    </header>
    <main id="main" tabindex="-1"><${Page} key=${path} param=${param} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("root"));
