// OpenID Connect sign-in on AWS: authorization code with PKCE (S256), as a public client in the browser.
//
// Only the round trip to the identity provider touches storage: `state`, `nonce` and the PKCE verifier sit in
// sessionStorage from the redirect out until the page is back, and are removed at once. The tokens stay in
// memory (api.js); a reload signs in again, which the provider usually answers without asking anything.
// The page sends the ID token: its `aud` is the client id (what the JWT authorizer's audience accepts) and it
// carries the e-mail and group claims the API reads (Cognito puts `email` only in the ID token).

const KEY = "ticketbound.oidc";

function randomText(bytes = 32) {
  const buffer = crypto.getRandomValues(new Uint8Array(bytes));
  return base64url(buffer);
}

function base64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function redirectUri() {
  return `${location.origin}/`;
}

// Sends the browser to the identity provider.
export async function signIn(config) {
  const pending = { state: randomText(), nonce: randomText(), verifier: randomText(48), hash: location.hash };
  sessionStorage.setItem(KEY, JSON.stringify(pending));
  const url = new URL(config.authorization_endpoint);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("client_id", config.client_id);
  url.searchParams.set("redirect_uri", redirectUri());
  url.searchParams.set("scope", config.scopes);
  url.searchParams.set("state", pending.state);
  url.searchParams.set("nonce", pending.nonce);
  url.searchParams.set("code_challenge", await challengeOf(pending.verifier));
  url.searchParams.set("code_challenge_method", "S256");
  location.assign(url.toString());
}

// The claims of a JWT, unverified: the API's JWT authorizer verifies the signature; the page only reads who
// it is for and checks the nonce against replay of another sign-in's token.
export function claimsOf(jwt) {
  const part = jwt.split(".")[1] || "";
  const text = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(decodeURIComponent(Array.from(text, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join("")));
}

// Groups as API Gateway renders them (`"[a b]"`), as a JSON array, or as one string.
export function groupsOf(value) {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value !== "string" || value === "") return [];
  const text = value.trim();
  if (text.startsWith("[") && text.endsWith("]")) return text.slice(1, -1).split(/[\s,]+/).filter(Boolean);
  return text.split(/[\s,]+/).filter(Boolean);
}

// Finishes a sign-in when the provider has sent the browser back with `?code=&state=`. Resolves to
// {token, claims, hash} or null when this load is not a return from the provider; throws with a readable
// message when the return is wrong.
export async function completeSignIn(config) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(KEY) || "null");
  sessionStorage.removeItem(KEY);
  history.replaceState(null, "", `/${pending && pending.hash ? pending.hash : ""}`);
  if (params.has("error")) {
    throw new Error(`The identity provider refused the sign-in: ${params.get("error_description") || params.get("error")}`);
  }
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("This sign-in was not started by this page (state mismatch). Sign in again.");
  }
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: redirectUri(),
    client_id: config.client_id,
    code_verifier: pending.verifier,
  });
  const response = await fetch(config.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
    credentials: "omit",
  });
  const tokens = await response.json().catch(() => ({}));
  if (!response.ok || !tokens.id_token) {
    throw new Error(`The identity provider did not issue tokens: ${tokens.error_description || tokens.error || response.status}`);
  }
  const claims = claimsOf(tokens.id_token);
  if (claims.nonce !== pending.nonce) throw new Error("The ID token does not answer this sign-in (nonce mismatch). Sign in again.");
  return { token: tokens.id_token, claims, hash: pending.hash };
}
