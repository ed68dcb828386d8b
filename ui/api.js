// The admin API as the UI calls it: the session cookie goes along by itself (same origin); every change carries
// the session's CSRF token. A 401 means the session ended (logged out elsewhere, expired, master key rotated).

let csrfToken = null;
let onSessionEnded = () => {};

export function setSession(session, ended) {
  csrfToken = session ? session.csrf_token : null;
  if (ended) onSessionEnded = ended;
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, { body, query } = {}) {
  const params = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== "")) : null;
  const url = params && [...params].length > 0 ? `${path}?${params}` : path;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const error = new ApiError(res.status, data?.error?.message ?? `The gateway answered ${res.status}.`, data?.error?.code ?? null);
    if (res.status === 401 && path !== "/ui/api/login") onSessionEnded(error);
    throw error;
  }
  return data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body: body ?? {} });
