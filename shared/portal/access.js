// All access: every grant, for admins, approvers and auditors, with when its access really ended (removed in
// the end system, and sessions that outlive that). Filters (resource, person, ticket, state, time
// range) go to `GET /v1/grants` as they are; pages follow `next`; *Revoke* (offered only where the grant's
// `actions` say the viewer may) asks for confirmation first; *Export CSV* downloads the filtered list through
// `fetch` with the caller's credentials, since a plain link would carry none.

import { api, currentCaller } from "./api.js";
import { h, field, notice, errorText, heading, when, badge, announce } from "./dom.js";

const STATES = ["pending", "active", "ended", "denied", "cancelled"];

// The filters as last applied, kept across re-renders of the view.
let applied = { resource: "", requester: "", ticket: "", states: [], from: "", to: "" };

// The query string of `filters` (without `?`).
function queryOf(filters) {
  const q = new URLSearchParams();
  for (const name of ["resource", "requester", "ticket"]) {
    if (filters[name].trim()) q.set(name, filters[name].trim());
  }
  for (const state of filters.states) q.append("status", state);
  // datetime-local values are local time; the API takes RFC 3339.
  if (filters.from) q.set("from", new Date(filters.from).toISOString());
  if (filters.to) q.set("to", new Date(filters.to).toISOString());
  return q.toString();
}

export async function viewAllAccess(main, _arg, ctx) {
  heading(main, "All access");
  const result = h("div", { id: "all-result", "aria-live": "polite" });
  const input = (id, type, value, extra = {}) => h("input", { id, type, value, autocomplete: "off", ...extra });
  const resource = input("all-resource", "text", applied.resource);
  const requester = input("all-requester", "email", applied.requester);
  const ticket = input("all-ticket", "text", applied.ticket, { placeholder: "jira-main:SEC-42" });
  const from = input("all-from", "datetime-local", applied.from);
  const to = input("all-to", "datetime-local", applied.to);
  const states = STATES.map((s) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "all-status", value: s, checked: applied.states.includes(s) }), ` ${s}`));
  const form = h("form", { id: "all-filters", class: "filters", on: { submit: (event) => {
    event.preventDefault();
    applied = {
      resource: resource.value,
      requester: requester.value,
      ticket: ticket.value,
      states: Array.from(form.querySelectorAll("input[name=all-status]:checked")).map((c) => c.value),
      from: from.value,
      to: to.value,
    };
    ctx.rerender();
  } } },
  field("Resource", resource),
  field("Person (e-mail)", requester),
  field("Ticket", ticket, "connection:key"),
  h("fieldset", {}, h("legend", {}, "State"), states),
  field("Requested from", from),
  field("Requested until", to),
  h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary", id: "all-apply" }, "Apply filters"),
    h("button", { type: "button", id: "all-export", on: { click: () => exportCsv(queryOf(applied), result) } }, "Export CSV")));

  const rows = h("tbody", { id: "all-rows" });
  const table = h("table", { class: "grants", id: "all-table" },
    h("caption", { class: "visually-hidden" }, "Grants, newest first"),
    h("thead", {}, h("tr", {}, ["Person", "Resource", "State", "Ticket", "Requested", "Ended", "Access removed", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
    rows);
  const more = h("button", { type: "button", id: "all-more", hidden: true }, "Show more");
  main.append(form, result, h("div", { class: "table-wrap" }, table), more);

  const query = queryOf(applied);
  let cursor = null;
  const load = async () => {
    const sep = query ? "&" : "";
    const path = `/v1/grants?${query}${sep}limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const r = await api("GET", path);
    if (!r.ok) {
      result.replaceChildren(notice("error", errorText(r.error)));
      more.hidden = true;
      return;
    }
    for (const g of r.data.items) rows.append(row(g, result, ctx));
    cursor = r.data.next;
    more.hidden = !cursor;
    if (!rows.children.length && !cursor) {
      rows.append(h("tr", {}, h("td", { colspan: "8", class: "empty" }, "No grants match these filters.")));
    }
  };
  more.addEventListener("click", load);
  await load();
}

function row(g, result, ctx) {
  const ticket = g.ticket ? `${g.ticket.key} (${g.ticket.connection})` : "—";
  const cell = h("td", { class: "actions" });
  if ((g.actions || []).includes("revoke")) {
    const start = h("button", { type: "button", id: `all-revoke-${g.id}`, on: { click: () => {
      start.hidden = true;
      cell.append(confirmRevoke(g, result, ctx, () => {
        start.hidden = false;
        start.focus();
      }));
    } } }, "Revoke…");
    cell.append(start);
  }
  cell.append(h("a", { href: `#/grant/${encodeURIComponent(g.id)}` }, "Details"));
  return h("tr", { id: `all-${g.id}` },
    h("td", {}, g.requester),
    h("td", {}, g.resource),
    h("td", {}, badge(g.status)),
    h("td", {}, ticket),
    h("td", {}, when(g.requested_at)),
    h("td", {}, g.ended_at ? when(g.ended_at) : "—"),
    h("td", {}, removal(g)),
    cell);
}

// When access really ended: the end system's confirmation, and until when sessions opened before it may last.
function removal(g) {
  if (!g.access_removed_at) return "—";
  if (!g.residual_until) return when(g.access_removed_at);
  return h("span", {}, when(g.access_removed_at), h("span", { class: "residual" }, "sessions may last until ", when(g.residual_until)));
}

// The confirmation of a revocation: it names whose access ends, and ends it only on a second, explicit click.
function confirmRevoke(g, result, ctx, cancelled) {
  const box = h("div", { class: "confirm", role: "group", "aria-label": `Revoke ${g.requester}'s access to ${g.resource}` });
  const yes = h("button", { type: "button", class: "danger", id: `all-confirm-${g.id}`, on: { click: async () => {
    yes.disabled = true;
    const comment = reason.value.trim();
    const answer = await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/revoke`, comment ? { comment } : undefined);
    if (!answer.ok) {
      result.replaceChildren(notice("error", errorText(answer.error)));
      yes.disabled = false;
      return;
    }
    await ctx.rerender();
    const message = `Revoked: ${g.requester}'s access to ${g.resource}.`;
    const slot = document.getElementById("all-result");
    if (slot) slot.replaceChildren(notice("ok", message));
    announce(message);
  } } }, "Revoke now");
  const no = h("button", { type: "button", on: { click: () => {
    box.remove();
    cancelled();
  } } }, "Cancel");
  const reasonId = `all-reason-${g.id}`;
  const reason = h("textarea", { id: reasonId, rows: 2, maxlength: 2000 });
  box.append(h("p", {}, `End ${g.requester}'s access to ${g.resource} now? Access is removed at once.`),
    h("label", { for: reasonId }, "Reason (kept in the audit trail)"), reason, yes, no);
  setTimeout(() => reason.focus(), 0);
  return box;
}

// The caller's credentials, as `api` sends them: the ID token on AWS, the trusted headers locally.
function authHeaders() {
  const caller = currentCaller();
  if (!caller) return {};
  if (caller.token) return { Authorization: `Bearer ${caller.token}` };
  return { "X-Ticketbound-User": caller.email, "X-Ticketbound-Groups": caller.groups.join(",") };
}

// Downloads the filtered list as CSV: fetched with the caller's credentials, then saved from a Blob.
async function exportCsv(query, result) {
  let response;
  try {
    response = await fetch(`/v1/grants/export.csv${query ? `?${query}` : ""}`, {
      headers: { Accept: "text/csv", ...authHeaders() },
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    result.replaceChildren(notice("error", `The server could not be reached (${e.message}).`));
    return;
  }
  if (!response.ok) {
    let error = { code: `http_${response.status}`, message: `The server answered ${response.status}.` };
    try {
      error = (await response.json()).error || error;
    } catch {
      // not JSON: keep the status
    }
    result.replaceChildren(notice("error", errorText(error)));
    return;
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: "ticketbound-grants.csv", id: "all-download" }, "ticketbound-grants.csv");
  // The file itself stays reachable from the link (the page's CSP lets no script fetch a blob: URL).
  link.blob = blob;
  result.replaceChildren(notice("ok", "The export is ready: ", link));
  link.click();
  announce("The export is ready");
}
