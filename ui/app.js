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

function currentPath() {
  const path = location.hash.replace(/^#\/?/, "");
  return PAGES.some((p) => p.path === path) ? path : "keys";
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
  return html`<main class="login" id="main">
    <h1>Gatehouse admin</h1>
    ${reason ? html`<p class="notice" role="status">${reason}</p>` : null}
    <form onSubmit=${submit}>
      <div class="field">
        <label for="master-key">Master key</label>
        <input id="master-key" name="master_key" type="password" autocomplete="current-password" required autofocus />
        <small>Only the master key logs in; a virtual key cannot.</small>
      </div>
      ${error ? html`<p class="notice error" role="alert">${error}</p>` : null}
      <button type="submit" disabled=${busy}>${busy ? "Logging in…" : "Log in"}</button>
    </form>
  </main>`;
}

function App() {
  const [session, setSessionState] = useState(undefined); // undefined: not known yet
  const [reason, setReason] = useState(null);
  const [path, setPath] = useState(currentPath());

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
    const onHash = () => setPath(currentPath());
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
    <main id="main" tabindex="-1"><${Page} key=${path} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("root"));
