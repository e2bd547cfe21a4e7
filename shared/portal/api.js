// The `/v1` client and who is calling. Locally the caller is picked on the page and sent as the trusted
// headers the local server reads; on AWS it is the signed-in person, whose ID token is sent as a Bearer token.
// Tokens live in this module's memory only: never in localStorage, sessionStorage or cookies.

let caller = null; // {email, groups: [...], token?: string}
let signedOut = () => {};

// `handler` runs when the API refuses the signed-in caller's token (it expired): the page offers to sign in again.
export function onSignedOut(handler) {
  signedOut = handler;
}

export function setCaller(next) {
  caller = next;
}

export function currentCaller() {
  return caller;
}

export function hasGroup(group) {
  return !!caller && caller.groups.includes(group);
}

// Calls the API. Resolves to {ok, status, data, error, etag}; `error` is the §5 error object
// ({code, message}) or one made up for a network failure, so every caller can show a message. `extraHeaders`
// carries conditional headers (If-Match); `etag` is the answer's ETag, if any.
export async function api(method, path, body, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (caller && caller.token) {
    headers.Authorization = `Bearer ${caller.token}`;
  } else if (caller) {
    headers["X-Ticketbound-User"] = caller.email;
    headers["X-Ticketbound-Groups"] = caller.groups.join(",");
  }
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    return { ok: false, status: 0, data: null, etag: null, error: { code: "network", message: `The server could not be reached (${e.message}).` } };
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  const etag = response.headers.get("ETag");
  if (response.ok) return { ok: true, status: response.status, data, error: null, etag };
  if (response.status === 401 && caller && caller.token) {
    caller = null;
    signedOut();
  }
  let error = data && data.error;
  if (!error) {
    error = response.status === 401
      ? { code: "unauthenticated", message: "You are not signed in, or your sign-in has expired. Sign in again." }
      : { code: `http_${response.status}`, message: `The server answered ${response.status}.` };
  }
  return { ok: false, status: response.status, data, error, etag };
}

// Every item of a paginated list (`{items, next}`), following `next` up to `max` items.
export async function listAll(path, max = 500) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const r = await api("GET", cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    if (!r.ok) return r;
    items.push(...r.data.items);
    cursor = r.data.next;
  } while (cursor && items.length < max);
  return { ok: true, status: 200, data: { items }, error: null };
}
