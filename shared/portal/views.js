// The requester's and approver's views: Request access, My access, Approvals, and a grant's detail.

import { api, listAll, currentCaller } from "./api.js";
import { h, field, fieldError, clearErrors, notice, errorText, heading, when, humanDuration, timeLeft, badge, details, announce } from "./dom.js";

// Ticket links seen in this page's searches, `<connection>:<key>` → URL (grants carry no ticket URL).
const ticketUrls = new Map();

const PRESETS = [
  ["PT1H", "1 hour"],
  ["PT4H", "4 hours"],
  ["P1D", "1 day"],
];

const END_REASONS = {
  time_bound_reached: "the time bound was reached",
  ticket_closed: "the ticket was closed",
  ticket_deleted: "the ticket was deleted",
  revoked: "ended early",
  withdrawn: "withdrawn by the requester",
  denied: "denied",
  approval_timed_out: "nobody decided in time",
};

// Which field of the request form an API error concerns.
function fieldOf(code) {
  if (["unknown_resource", "resource_missing", "not_allowed"].includes(code)) return "resource";
  if (code === "invalid_reason") return "reason";
  if (["invalid_duration", "indefinite_requires_ticket", "duration_too_long"].includes(code)) return "duration";
  if (/ticket|connection|assign|requester_not_verifiable/.test(code)) return "ticket";
  return "request";
}

export async function viewRequest(main) {
  heading(main, "Request access");
  const [resources, connections] = await Promise.all([listAll("/v1/resources"), api("GET", "/v1/connections")]);
  if (!resources.ok) {
    main.append(notice("error", `The resource catalog could not be read: ${errorText(resources.error)}`));
    return;
  }
  if (resources.data.items.length === 0) {
    main.append(notice("info", "There are no resources to request yet. An admin adds them under Admin."));
    return;
  }
  const catalog = new Map(resources.data.items.map((r) => [r.id, r]));

  const resource = h("select", { id: "resource", required: true },
    resources.data.items.map((r) => h("option", { value: r.id }, `${r.name} (${r.id})`)));
  const info = h("div", { id: "resource-info", class: "resource-info", "aria-live": "polite" });
  const reason = h("textarea", { id: "reason", rows: "2", required: true, maxlength: "1000" });

  // Admins may list connections; everyone else types the connection's id (GET /v1/connections is admin-only).
  const connectionIds = connections.ok ? connections.data.items.map((c) => c.id) : [];
  const connection = connectionIds.length
    ? h("select", { id: "connection" }, h("option", { value: "" }, "No ticket"), connectionIds.map((id) => h("option", { value: id }, id)))
    : h("input", { id: "connection", type: "text", autocomplete: "off", spellcheck: "false" });
  const key = h("input", { id: "ticket-key", type: "text", autocomplete: "off", spellcheck: "false" });
  const results = h("div", { id: "ticket-results", "aria-live": "polite" });
  const search = h("button", { type: "button", id: "search-tickets", on: { click: () => searchTickets(connection.value.trim(), key, results) } }, "Search for tickets");

  const custom = h("input", { id: "duration-custom", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. PT30M, P2D" });
  const radio = (value, label) => {
    const id = `duration-option-${value.toLowerCase()}`;
    return h("div", { class: "choice", id: `choice-${id}` },
      h("input", { type: "radio", name: "duration", id, value, checked: value === "PT4H", "aria-describedby": "err-duration" }),
      h("label", { for: id }, label));
  };
  const indefinite = radio("indefinite", "Until the ticket is closed");
  const customChoice = radio("custom", "Custom (ISO-8601)");
  custom.addEventListener("input", () => {
    customChoice.querySelector("input").checked = true;
  });

  const bound = () => connection.value.trim() !== "" && key.value.trim() !== "";
  const update = () => {
    const r = catalog.get(resource.value);
    info.replaceChildren(...[
      r.description ? h("p", {}, r.description) : null,
      h("p", {}, "Longest allowed: ", h("strong", {}, r.max_duration ? humanDuration(r.max_duration) : "the deployment's maximum"), r.max_duration ? ` (${r.max_duration})` : ""),
      r.require_ticket ? h("p", { class: "requires", id: "requires-ticket" }, "This resource requires a ticket: bind the request to one below.") : null,
    ].filter(Boolean));
    key.required = !!r.require_ticket;
    indefinite.hidden = !bound();
    if (!bound() && indefinite.querySelector("input").checked) document.getElementById("duration-option-pt4h").checked = true;
  };
  resource.addEventListener("change", update);
  connection.addEventListener("input", update);
  connection.addEventListener("change", update);
  key.addEventListener("input", update);

  const result = h("div", { id: "request-result", "aria-live": "polite" });
  const form = h("form", { id: "request-form", novalidate: true, on: { submit: async (event) => {
    event.preventDefault();
    clearErrors(form);
    result.replaceChildren();
    const checked = form.querySelector("input[name=duration]:checked");
    const duration = checked.value === "custom" ? custom.value.trim() : checked.value;
    const body = { resource: resource.value, reason: reason.value.trim(), duration };
    if (bound()) body.ticket = { connection: connection.value.trim(), key: key.value.trim() };
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    const r = await api("POST", "/v1/grants", body);
    submit.disabled = false;
    if (!r.ok) {
      const where = fieldOf(r.error.code);
      const id = { resource: "resource", reason: "reason", duration: "duration", ticket: "ticket-key", request: "request" }[where];
      fieldError(id, errorText(r.error));
      if (where === "duration" && checked.value === "custom") custom.setAttribute("aria-invalid", "true");
      announce(`Not requested: ${r.error.message}`);
      return;
    }
    const g = r.data;
    result.replaceChildren(notice("ok", `Requested ${g.resource} for ${humanDuration(g.duration)}: `, badge(g.status), " ",
      h("a", { href: `#/grant/${encodeURIComponent(g.id)}` }, "see the request")));
    reason.value = "";
  } } },
    field("Resource", resource),
    info,
    field("Reason", reason, "What you need the access for, e.g. the incident."),
    h("fieldset", {},
      h("legend", {}, "Ticket"),
      h("p", { class: "hint" }, "Expire access when the ticket is closed: bind the request to a ticket assigned to you."),
      field("Connection", connection, connections.ok ? null : "The ticket system's connection id, e.g. jira-main (ask your admin)."),
      field("Ticket key", key, "e.g. SEC-42, or pick one from the search."),
      search,
      results),
    h("fieldset", { "aria-describedby": "err-duration" },
      h("legend", {}, "Duration"),
      PRESETS.map(([v, l]) => radio(v, l)),
      indefinite,
      customChoice,
      h("div", { class: "field" }, h("label", { for: "duration-custom", class: "visually-hidden" }, "Custom duration"), custom),
      h("p", { class: "error", id: "err-duration", "aria-live": "polite" })),
    h("p", { class: "error", id: "err-request", "aria-live": "polite" }),
    h("button", { type: "submit", id: "submit-request", class: "primary" }, "Request access"),
    result);
  main.append(form);
  update();
}

async function searchTickets(connection, key, results) {
  fieldError("ticket-key", "");
  if (!connection) {
    fieldError("connection", "Choose the connection to search first.");
    return;
  }
  fieldError("connection", "");
  results.replaceChildren(h("p", {}, "Searching…"));
  const r = await api("GET", `/v1/tickets?connection=${encodeURIComponent(connection)}`);
  if (!r.ok) {
    results.replaceChildren();
    fieldError("ticket-key", errorText(r.error));
    return;
  }
  if (r.data.items.length === 0) {
    results.replaceChildren(h("p", {}, "No open tickets are assigned to you in this connection."));
    return;
  }
  const item = (t) => {
    ticketUrls.set(`${connection}:${t.key}`, t.url);
    return h("li", {},
      h("button", { type: "button", class: "link", "data-key": t.key, on: { click: () => {
        key.value = t.key;
        key.dispatchEvent(new Event("input"));
        announce(`${t.key} chosen`);
        key.focus();
      } } }, `Use ${t.key}`),
      ` ${t.summary} · ${t.status} · `,
      h("a", { href: t.url, target: "_blank", rel: "noopener noreferrer" }, "open"));
  };
  const list = h("ul", { class: "tickets" }, r.data.items.map(item));
  results.replaceChildren(
    h("p", {}, `${r.data.items.length} open ticket(s) assigned to you:`),
    list);
  // The API answers a page at a time; `next` fetches the following one.
  let next = r.data.next;
  if (next) {
    const more = h("button", { type: "button", id: "more-tickets", on: { click: async () => {
      more.disabled = true;
      const page = await api("GET", `/v1/tickets?connection=${encodeURIComponent(connection)}&cursor=${encodeURIComponent(next)}`);
      if (!page.ok) {
        more.disabled = false;
        fieldError("ticket-key", errorText(page.error));
        return;
      }
      list.append(...page.data.items.map(item));
      next = page.data.next;
      if (next) more.disabled = false; else more.remove();
      announce(`${page.data.items.length} more ticket(s)`);
    } } }, "More tickets");
    results.append(more);
  }
}

function ticketLink(ticket) {
  if (!ticket) return null;
  const url = ticketUrls.get(`${ticket.connection}:${ticket.key}`);
  const text = `${ticket.key} (${ticket.connection})`;
  return url ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, text) : text;
}

function deprovisioning(d) {
  if (!d) return null;
  return h("span", {}, badge(d.state, `deprov-${d.state}`), d.attempts ? ` after ${d.attempts} attempt(s)` : "",
    d.last_error ? h("span", { class: "error-text" }, ` — ${d.last_error}`) : "");
}

// One grant as a card, with the actions its viewer may take.
function grantCard(g, { actions = [], headingLevel = "h3" } = {}) {
  const pairs = [
    ["Requester", g.requester],
    ["Reason", g.reason],
    ["Duration", humanDuration(g.duration)],
    ["Ticket", ticketLink(g.ticket)],
    ["Requested", when(g.requested_at)],
  ];
  if (g.status === "active") pairs.push(["Time left", g.expires_at ? h("span", { class: "time-left", "data-expires": g.expires_at }, timeLeft(g.expires_at)) : "until the ticket is closed"]);
  const approvals = g.approvals || [];
  if (g.approvals_required > 1 || (g.status === "pending" && approvals.length)) {
    pairs.push(["Approvals", `${approvals.length} of ${g.approvals_required || 1}${approvals.length ? ` (${approvals.map((a) => a.by).join(", ")})` : ""}`]);
  }
  if (g.decided_by) pairs.push([g.status === "denied" ? "Denied by" : "Approved by", g.decided_by]);
  if (g.ended_at) pairs.push(["Ended", when(g.ended_at)]);
  if (g.end_reason) pairs.push(["End reason", END_REASONS[g.end_reason] || g.end_reason]);
  if (g.ended_by) pairs.push(["Ended by", g.ended_by]);
  pairs.push(["Deprovisioning", deprovisioning(g.deprovisioning)]);
  const titleId = `grant-title-${g.id}`;
  return h("article", { class: `grant ${g.status}`, id: `grant-${g.id}`, "aria-labelledby": titleId },
    h(headingLevel, { id: titleId }, `${g.resource} `, badge(g.status)),
    details(pairs),
    h("div", { class: "actions" }, actions,
      headingLevel === "h3" ? h("a", { href: `#/grant/${encodeURIComponent(g.id)}` }, "Details and audit trail") : null));
}

function section(title, id, cards, empty) {
  return h("section", { "aria-labelledby": id },
    h("h2", { id }, title),
    cards.length ? h("div", { class: "cards" }, cards) : h("p", { class: "empty" }, empty));
}

export async function viewAccess(main, _arg, ctx) {
  heading(main, "My access");
  const me = currentCaller();
  const result = h("div", { id: "access-result", "aria-live": "polite" });
  main.append(result);
  const r = await listAll(`/v1/grants?requester=${encodeURIComponent(me.email)}`, 200);
  if (!r.ok) {
    main.append(notice("error", errorText(r.error)));
    return;
  }
  const end = async (g, label) => {
    const answer = await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/revoke`);
    if (!answer.ok) {
      result.replaceChildren(notice("error", errorText(answer.error)));
      return;
    }
    ctx.rerender().then(() => {
      document.getElementById("access-result").replaceChildren(notice("ok", `${label}: ${g.resource}.`));
      announce(`${label}: ${g.resource}`);
    });
  };
  const grants = r.data.items;
  const pending = grants.filter((g) => g.status === "pending");
  const active = grants.filter((g) => g.status === "active");
  const ended = grants.filter((g) => !["pending", "active"].includes(g.status));
  main.append(
    section("Pending", "pending-title", pending.map((g) => grantCard(g, { actions: [
      h("button", { type: "button", id: `withdraw-${g.id}`, on: { click: () => end(g, "Withdrawn") } }, "Withdraw"),
    ] })), "No requests waiting for approval."),
    section("Active", "active-title", active.map((g) => grantCard(g, { actions: [
      h("button", { type: "button", class: "primary", id: `done-${g.id}`, on: { click: () => end(g, "Access ended") } }, "I'm done"),
    ] })), "No active access."),
    section("Ended", "ended-title", ended.map((g) => grantCard(g)), "Nothing has ended yet."),
  );
  // Keep "time left" true, and follow deprovisioning that is still under way.
  const busy = ended.some((g) => g.deprovisioning && g.deprovisioning.state === "pending");
  const timer = setInterval(() => {
    for (const el of document.querySelectorAll("[data-expires]")) el.textContent = timeLeft(el.dataset.expires);
  }, 30000);
  const poll = busy ? setTimeout(() => ctx.rerender(), 2000) : null;
  ctx.onLeave(() => {
    clearInterval(timer);
    clearTimeout(poll);
  });
}

export async function viewApprovals(main, _arg, ctx) {
  heading(main, "Approvals");
  const me = currentCaller();
  const result = h("div", { id: "approvals-result", "aria-live": "polite" });
  main.append(result);
  const r = await listAll("/v1/grants?status=pending", 200);
  if (!r.ok) {
    main.append(notice("error", errorText(r.error)));
    return;
  }
  const decide = async (g, verb, label) => {
    const answer = await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/${verb}`);
    if (!answer.ok) {
      result.replaceChildren(notice("error", errorText(answer.error)));
      return;
    }
    await ctx.rerender();
    document.getElementById("approvals-result").replaceChildren(notice("ok", `${label} ${g.requester}'s request for ${g.resource}.`));
    announce(`${label} ${g.requester}'s request`);
  };
  const cards = r.data.items.map((g) => g.requester === me.email
    ? grantCard(g, { actions: [h("p", { class: "hint" }, "Your own request: another approver decides it.")] })
    : grantCard(g, { actions: [
      h("button", { type: "button", class: "primary", id: `approve-${g.id}`, on: { click: () => decide(g, "approve", "Approved") } }, "Approve"),
      h("button", { type: "button", id: `deny-${g.id}`, on: { click: () => decide(g, "deny", "Denied") } }, "Deny"),
    ] }));
  main.append(section("Waiting for a decision", "waiting-title", cards, "Nothing is waiting for you."));
}

const EVENT_NAMES = {
  requested: "Requested",
  approval_recorded: "Approval recorded",
  approved: "Approved",
  denied: "Denied",
  cancelled: "Cancelled",
  ended: "Ended",
  provisioned: "Access granted in the end system",
  provisioning_retry: "Granting access failed; retrying",
  provisioning_failed: "Granting access failed",
  deprovisioned: "Access removed in the end system",
  deprovisioning_skipped: "Removing access skipped",
  deprovisioning_retry: "Removing access failed; retrying",
  deprovisioning_failed: "Removing access failed",
};

export async function viewGrant(main, id, ctx) {
  heading(main, "Grant");
  const [g, events] = await Promise.all([api("GET", `/v1/grants/${encodeURIComponent(id)}`), listAll(`/v1/grants/${encodeURIComponent(id)}/events`)]);
  if (!g.ok) {
    main.append(notice("error", errorText(g.error)));
    return;
  }
  main.append(grantCard(g.data, { headingLevel: "h2" }));
  const trail = events.ok
    ? h("ol", { class: "trail", id: "audit-trail" }, events.data.items.map((e) => {
      const extra = e.detail && typeof e.detail === "object" ? Object.entries(e.detail).filter(([, v]) => v !== null && v !== "") : [];
      return h("li", {},
        when(e.at), " ", h("strong", {}, EVENT_NAMES[e.kind] || e.kind), ` by ${e.actor || "Ticketbound"} → ${e.status}`,
        extra.length ? h("span", { class: "hint" }, ` (${extra.map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")})`) : "");
    }))
    : notice("error", errorText(events.error));
  main.append(h("section", { "aria-labelledby": "trail-title" }, h("h2", { id: "trail-title" }, "Audit trail"), trail));
  const busy = g.data.deprovisioning && g.data.deprovisioning.state === "pending";
  if (busy) {
    const poll = setTimeout(() => ctx.rerender(), 2000);
    ctx.onLeave(() => clearTimeout(poll));
  }
}
