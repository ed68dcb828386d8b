/** A tiny fetch wrapper for tests: JSON in, status + parsed body + headers out. */
export interface ApiResponse<T = any> {
  status: number;
  body: T;
  text: string;
  headers: Headers;
}

export interface ApiOptions {
  method?: string;
  key?: string;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

export async function api<T = any>(baseUrl: string, path: string, options: ApiOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  let body: string | undefined;
  if (options.rawBody !== undefined) body = options.rawBody;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
  const res = await fetch(`${baseUrl}${path}`, { method: options.method ?? (body === undefined ? "GET" : "POST"), headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed as T, text, headers: res.headers };
}

export function chatBody(model: string, extra: Record<string, unknown> = {}) {
  return { model, messages: [{ role: "user", content: "Say hello" }], ...extra };
}

/** Asserts the OpenAI error shape and returns the error object. */
export function openAIError(body: any): { message: string; type: string; param: string | null; code: string | number | null } {
  if (!body || typeof body !== "object" || !body.error) throw new Error(`not an OpenAI error body: ${JSON.stringify(body)}`);
  const e = body.error;
  for (const field of ["message", "type", "param", "code"]) if (!(field in e)) throw new Error(`error body lacks "${field}": ${JSON.stringify(body)}`);
  if (typeof e.message !== "string" || e.message.length === 0) throw new Error("error message is empty");
  return e;
}
