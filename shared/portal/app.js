// The portal's entry point: reads /portal/config.json, establishes who is calling (the local picker or an
// OpenID Connect sign-in), and shows the view the URL's hash names (#/request, #/access, #/approvals,
// #/grant/<id>, #/admin, #/all; `#/request?connection=…&ticket=KEY&resource=…` opens a prefilled request form).

import { setCaller, currentCaller, hasGroup, onSignedOut, resources } from "./api.js";
import { signIn, completeSignIn, groupsOf } from "./oidc.js";
import { h, notice, heading } from "./dom.js";
import { viewRequest, viewAccess, viewApprovals, viewGrant } from "./views.js";

const LOCAL_KEY = "ticketbound.local-caller";
const PRESETS = [
  ["Requester", "alice@example.com", ""],
  ["Approver", "bob@example.com", "ticketbound-approvers"],
  ["Admin", "admin@example.com", "ticketbound-admins"],
];

// Admin and All access are loaded when first opened: most people never do, and the first load stays light.
const viewAdmin = (...args) => import("./admin.js").then((m) => m.viewAdmin(...args));
const viewAllAccess = (...args) => import("./access.js").then((m) => m.viewAllAccess(...args));
const views = { request: viewRequest, access: viewAccess, approvals: viewApprovals, grant: viewGrant, admin: viewAdmin, all: viewAllAccess };
let config = null;
let stopView = null;

async function start() {
  const main = document.getElementById("main");
  try {
    const response = await fetch("/portal/config.json", { cache: "no-store" });
    config = await response.json();
  } catch (e) {
    main.replaceChildren(notice("error", `The portal's configuration could not be loaded: ${e.message}`));
    return;
  }
  if (config.mode === "local") {
    localIdentity();
  } else if (config.mode === "oidc") {
    if (!(await oidcIdentity(main))) return;
  } else {
    main.replaceChildren(
      heading(main, "Sign-in is not configured"),
      notice("error", "This deployment has no OpenID Connect client for the portal. Set the PortalClientId, OidcAuthorizationEndpoint and OidcTokenEndpoint parameters of the stack (docs/operator-guide.md, “The portal”)."),
    );
    return;
  }
  window.addEventListener("hashchange", () => render(false));
  // A page opened (or reloaded) at `#main`, the skip link's target, still shows its view.
  await render(true);
}

function localIdentity() {
  const saved = JSON.parse(sessionStorage.getItem(LOCAL_KEY) || "null") || { email: PRESETS[0][1], groups: [] };
  setCaller(saved);
  const email = h("input", { id: "who-email", type: "email", autocomplete: "off", value: saved.email, required: true });
  const groups = h("input", { id: "who-groups", type: "text", autocomplete: "off", value: saved.groups.join(","), placeholder: "comma-separated" });
  const preset = h(
    "select",
    { id: "who-preset", "aria-label": "Examples", on: { change: () => {
      const p = PRESETS[+preset.value];
      if (p) {
        email.value = p[1];
        groups.value = p[2];
      }
    } } },
    h("option", { value: "" }, "Examples…"),
    PRESETS.map(([label, e, g], i) => h("option", { value: String(i) }, `${label}: ${e}${g ? ` (${g})` : ""}`)),
  );
  const form = h(
    "form",
    { id: "who", class: "who", "aria-label": "Act as (local only)", on: { submit: (event) => {
      event.preventDefault();
      const next = { email: email.value.trim(), groups: groups.value.split(",").map((g) => g.trim()).filter(Boolean) };
      sessionStorage.setItem(LOCAL_KEY, JSON.stringify(next));
      setCaller(next);
      showRoles();
      render(false);
    } } },
    h("span", { class: "badge local", title: "The local server trusts these headers as sent; on AWS you sign in instead." }, "Local only"),
    h("label", { for: "who-email" }, "Act as"),
    email,
    h("label", { for: "who-groups" }, "Groups"),
    groups,
    preset,
    h("button", { type: "submit", id: "who-switch" }, "Switch"),
  );
  document.getElementById("identity").replaceChildren(form);
  showRoles();
}

async function oidcIdentity(main) {
  let signedIn;
  try {
    signedIn = await completeSignIn(config);
  } catch (e) {
    main.replaceChildren(notice("error", e.message), signInButton());
    return false;
  }
  if (!signedIn) {
    main.replaceChildren(heading(main, "Sign in"), h("p", {}, "Ticketbound uses your organisation's sign-in."), signInButton());
    return false;
  }
  const claims = signedIn.claims;
  setCaller({ email: String(claims[config.email_claim] || ""), groups: groupsOf(claims[config.groups_claim]), token: signedIn.token });
  if (signedIn.hash) location.hash = signedIn.hash;
  const who = h("p", { class: "who" }, "Signed in as ", h("strong", {}, currentCaller().email), " ",
    h("button", { type: "button", on: { click: () => {
      setCaller(null);
      location.replace("/");
    } } }, "Sign out"));
  document.getElementById("identity").replaceChildren(who);
  showRoles();
  onSignedOut(() => {
    document.getElementById("identity").replaceChildren(
      h("p", { class: "who", role: "alert" }, "Your sign-in has expired. ", signInButton()));
  });
  return true;
}

function signInButton() {
  return h("button", { type: "button", id: "sign-in", on: { click: () => signIn(config) } }, "Sign in");
}

// Approvals and Admin are listed only for the people who can use them (the API decides regardless). Approvals
// is also listed for someone outside the approver group whom a resource names among its own approvers.
function showRoles() {
  const approvals = document.getElementById("nav-approvals").parentElement;
  approvals.hidden = !hasGroup(config.approver_group);
  document.getElementById("nav-admin").parentElement.hidden = !hasGroup(config.admin_group);
  document.getElementById("nav-all").parentElement.hidden = ![config.approver_group, config.admin_group, config.auditor_group].some(hasGroup);
  const me = currentCaller();
  if (approvals.hidden && me) {
    decidesSomeResource(me).then((yes) => {
      if (yes && currentCaller() === me) approvals.hidden = false;
    });
  }
}

// Whether a resource lists `me` (by e-mail or group) among its own approvers.
async function decidesSomeResource(me) {
  const r = await resources();
  if (!r.ok) return false;
  const email = me.email.toLowerCase();
  return r.data.items.some((res) => {
    const listed = res.approvers;
    if (!listed) return false;
    return (listed.users || []).some((u) => u.toLowerCase() === email)
      || (listed.groups || []).some((g) => me.groups.includes(g));
  });
}

// Views render into a fresh container that replaces the page's content only if no later navigation started
// meanwhile, so two quick clicks never mix two views.
let generation = 0;

async function render(initial) {
  // Following the skip link only moves focus; it is no navigation.
  if (!initial && location.hash && !location.hash.startsWith("#/")) return;
  const route = location.hash.startsWith("#/") ? location.hash.slice(2).split("?")[0] : "";
  const [name, arg] = route.split("/");
  const view = views[name] || viewRequest;
  const mine = ++generation;
  if (stopView) stopView();
  stopView = null;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${name || "request"}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  main.setAttribute("aria-busy", "true");
  const container = h("div", { class: "view" });
  let leave = null;
  const ctx = { config, rerender: () => render(false), onLeave: (f) => { leave = f; } };
  try {
    await view(container, decodeURIComponent(arg || ""), ctx);
  } catch (e) {
    container.append(notice("error", `Something went wrong in the page: ${e.message}`));
  }
  if (mine !== generation) {
    if (leave) leave();
    return;
  }
  stopView = leave;
  const hadFocus = main.contains(document.activeElement);
  main.replaceChildren(container);
  main.removeAttribute("aria-busy");
  const title = main.querySelector("h1");
  if (title) {
    document.title = `${title.textContent} · Ticketbound`;
    if (hadFocus || document.activeElement === document.body) title.focus();
  }
}

start();
