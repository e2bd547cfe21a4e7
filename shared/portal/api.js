// The `/v1` client and who is calling. Locally the caller is picked on the page and sent as the trusted
// headers the local server reads; on AWS it is the signed-in person, whose ID token is sent as a Bearer token.
// Tokens live in this module's memory only: never in localStorage, sessionStorage or cookies.

let caller = null; // {email, groups: [...], token?: string}
let signedOut = () => {};
let catalog = null; // the resource catalog's answer (a promise), see `resources`

// `handler` runs when the API refuses the signed-in caller's token (it expired): the page offers to sign in again.
export function onSignedOut(handler) {
  signedOut = handler;
}

export function setCaller(next) {
  caller = next;
  // Another person (the local picker) sees the catalog afresh, as after a new sign-in.
  catalog = null;
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
  if (method !== "GET" && response.ok && path.startsWith("/v1/resources")) catalog = null;
  // A conditional GET (If-None-Match) the server answered "unchanged": what the caller holds is current.
  if (response.status === 304) return { ok: true, status: 304, data: null, error: null, etag, unchanged: true };
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

// The resource catalog, read once per page load and person (every view and the menu share it) and read again
// only after this page changed a resource.
export function resources() {
  if (!catalog) {
    catalog = listAll("/v1/resources", 500).then((r) => {
      if (!r.ok) catalog = null;
      return r;
    });
  }
  return catalog;
}

// Calls `onChange(data)` with the answer of GET `path` whenever it changes: every `everyMs` while the
// tab is visible (a conditional GET, so an unchanged answer is a bodyless 304), and at once when the tab
// becomes visible again; nothing while it is hidden. `etag` is the tag of what the caller already shows.
// Returns the function that stops it.
export function watch(path, onChange, { everyMs = 4000, etag: known = null } = {}) {
  let etag = known;
  let timer = null;
  let stopped = false;
  const tick = async () => {
    timer = null;
    if (stopped || document.hidden) return;
    const r = await api("GET", path, undefined, etag ? { "If-None-Match": etag } : {});
    if (stopped) return;
    if (r.ok && !r.unchanged) {
      etag = r.etag;
      onChange(r.data);
    }
    // A failed read is tried again later, more slowly: the page keeps what it shows meanwhile.
    timer = setTimeout(tick, r.ok ? everyMs : everyMs * 4);
  };
  const visible = () => {
    if (!document.hidden && !timer && !stopped) tick();
  };
  document.addEventListener("visibilitychange", visible);
  timer = setTimeout(tick, everyMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", visible);
  };
}
