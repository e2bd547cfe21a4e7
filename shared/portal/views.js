// The requester's and approver's views: Request access, My access, Approvals, and a grant's detail.

import { api, listAll, currentCaller, hasGroup, resources as readResources, watch } from "./api.js";
import { h, field, fieldError, clearErrors, notice, errorBox, explain, showErrors, heading, when, humanDuration, timeLeft, badge, details, announce, confirmButton } from "./dom.js";

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

// ISO-8601 durations in seconds (weeks, days, hours, minutes, seconds), to compare with a resource's maximum;
// null for anything else.
function seconds(iso) {
  const m = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(iso || "");
  if (!m) return null;
  const [w, d, hh, mm, ss] = m.slice(1).map((v) => +(v || 0));
  return (((w * 7 + d) * 24 + hh) * 60 + mm) * 60 + ss;
}

// Whether `me` may request `resource`: a resource with a `requesters` list takes only those groups.
function mayRequest(resource, me) {
  const groups = resource.requesters;
  return !groups || groups.length === 0 || groups.some((g) => me.groups.includes(g));
}

// The request form's fields given by the URL: `#/request?connection=…&ticket=KEY&resource=…` (a deep link from
// a ticket), plus `reason`, `duration` and `extends` when the page itself offers "Extend" or "Request again".
function prefill() {
  const query = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(query));
}

export async function viewRequest(main) {
  heading(main, "Request access");
  const me = currentCaller();
  const given = prefill();
  const [catalogAnswer, directory] = await Promise.all([readResources(), api("GET", "/v1/connection-directory")]);
  if (!catalogAnswer.ok) {
    main.append(notice("error", "The resource catalog could not be read. ", errorBox(catalogAnswer.error)));
    return;
  }
  // Resources the server would refuse this person are not offered.
  const offered = catalogAnswer.data.items.filter((r) => mayRequest(r, me));
  if (offered.length === 0) {
    main.append(notice("info", catalogAnswer.data.items.length
      ? "There is no resource you may request. An admin decides which groups may request each resource."
      : "There are no resources to request yet. An admin adds them under Admin."));
    return;
  }
  const catalog = new Map(offered.map((r) => [r.id, r]));

  const resource = h("select", { id: "resource", required: true },
    offered.map((r) => h("option", { value: r.id }, `${r.name} (${r.id})`)));
  if (given.resource && catalog.has(given.resource)) resource.value = given.resource;
  const info = h("div", { id: "resource-info", class: "resource-info", "aria-live": "polite" });
  // The API takes up to 2,000 characters.
  const reason = h("textarea", { id: "reason", rows: "2", required: true, maxlength: "2000" });
  if (given.reason) reason.value = given.reason;

  // The connections anyone signed in may see (id, name, kind, site); a server without that list gets a text
  // field for the connection's id instead.
  const listed = directory.ok ? directory.data.items : null;
  const connection = listed
    ? h("select", { id: "connection" }, h("option", { value: "" }, "No ticket"),
      listed.map((c) => h("option", { value: c.id }, `${c.name || c.id} (${[c.kind, c.site].filter(Boolean).join(", ")})`)))
    : h("input", { id: "connection", type: "text", autocomplete: "off", spellcheck: "false" });
  if (given.connection) {
    if (listed && !listed.some((c) => c.id === given.connection)) connection.append(h("option", { value: given.connection }, given.connection));
    connection.value = given.connection;
  }
  const key = h("input", { id: "ticket-key", type: "text", autocomplete: "off", spellcheck: "false" });
  if (given.ticket) key.value = given.ticket;
  const results = h("div", { id: "ticket-results", "aria-live": "polite" });
  const search = h("button", { type: "button", id: "search-tickets", on: { click: () => searchTickets(connection.value.trim(), key, results) } }, "Search for tickets");

  const custom = h("input", { id: "duration-custom", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "e.g. PT30M, P2D" });
  const radio = (value, label) => {
    const id = `duration-option-${value.toLowerCase()}`;
    return h("div", { class: "choice", id: `choice-${id}` },
      h("input", { type: "radio", name: "duration", id, value, checked: value === "PT4H", "aria-describedby": "err-duration" }),
      h("label", { for: id }, label));
  };
  const presets = PRESETS.map(([v, l]) => [v, radio(v, l)]);
  const indefinite = radio("indefinite", "Until the ticket is closed");
  const customChoice = radio("custom", "Custom (ISO-8601)");
  custom.addEventListener("input", () => {
    customChoice.querySelector("input").checked = true;
  });
  if (given.duration) {
    const preset = presets.find(([v]) => v === given.duration);
    if (preset) preset[1].querySelector("input").checked = true;
    else if (given.duration === "indefinite") indefinite.querySelector("input").checked = true;
    else {
      custom.value = given.duration;
      customChoice.querySelector("input").checked = true;
    }
  }

  const bound = () => connection.value.trim() !== "" && key.value.trim() !== "";
  const update = () => {
    const r = catalog.get(resource.value);
    info.replaceChildren(...[
      r.description ? h("p", {}, r.description) : null,
      h("p", {}, "Longest allowed: ", h("strong", {}, r.max_duration ? humanDuration(r.max_duration) : "the deployment's maximum"), r.max_duration ? ` (${r.max_duration})` : ""),
      r.require_ticket ? h("p", { class: "requires", id: "requires-ticket" }, "This resource requires a ticket: bind the request to one below.") : null,
    ].filter(Boolean));
    key.required = !!r.require_ticket;
    // Durations above the resource's maximum are not offered.
    const max = seconds(r.max_duration);
    for (const [value, choice] of presets) {
      choice.hidden = max !== null && seconds(value) > max;
      if (choice.hidden && choice.querySelector("input").checked) customChoice.querySelector("input").checked = true;
    }
    indefinite.hidden = !bound();
    if (!bound() && indefinite.querySelector("input").checked) {
      const open = presets.find(([, c]) => !c.hidden);
      if (open) open[1].querySelector("input").checked = true;
      else customChoice.querySelector("input").checked = true;
    }
  };
  resource.addEventListener("change", update);
  connection.addEventListener("input", update);
  connection.addEventListener("change", update);
  key.addEventListener("input", update);

  const result = h("div", { id: "request-result", "aria-live": "polite" });
  const form = h("form", { id: "request-form", novalidate: true, on: { submit: async (event) => {
    event.preventDefault();
    clearErrors(form);
    custom.removeAttribute("aria-invalid");
    result.replaceChildren();
    const checked = form.querySelector("input[name=duration]:checked");
    const duration = checked.value === "custom" ? custom.value.trim() : checked.value;
    // What the page can tell before asking the server, all at once.
    const problems = [];
    if (!reason.value.trim()) problems.push({ field: "reason", content: "Say what you need the access for." });
    if (key.value.trim() && !connection.value.trim()) {
      // A key without its connection would be filed unbound, and would not end when the ticket closes.
      problems.push({ field: "connection", content: "Choose the connection this ticket is in, or clear the ticket key." });
    }
    if (checked.value === "custom" && !duration) problems.push({ field: "duration-custom", content: "Type a duration, e.g. PT30M." });
    if (showErrors(problems.map((p) => (p.field === "duration-custom" ? { ...p, field: "duration" } : p)))) {
      if (checked.value === "custom" && !duration) custom.setAttribute("aria-invalid", "true");
      announce("Not requested: check the marked fields.");
      return;
    }
    const body = { resource: resource.value, reason: reason.value.trim(), duration };
    if (bound()) body.ticket = { connection: connection.value.trim(), key: key.value.trim() };
    if (given.extends) body.extends = given.extends;
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    const r = await api("POST", "/v1/grants", body);
    submit.disabled = false;
    if (!r.ok) {
      let [where] = explain(r.error);
      if (where === "duration" && checked.value === "custom") custom.setAttribute("aria-invalid", "true");
      if (!document.getElementById(where)) where = where === "request" ? "request" : where;
      showErrors([{ field: where, content: errorBox(r.error) }]);
      announce(`Not requested: ${explain(r.error)[1]}`);
      return;
    }
    const g = r.data;
    const done = notice("ok", `Requested ${g.resource} for ${humanDuration(g.duration)}: `, badge(g.status), " ",
      h("a", { href: `#/grant/${encodeURIComponent(g.id)}` }, "see the request"));
    done.setAttribute("tabindex", "-1");
    result.replaceChildren(done);
    reason.value = "";
    // Focus moves to the outcome (not to <body>), and a phone scrolls to it.
    done.focus({ preventScroll: true });
    done.scrollIntoView({ block: "center" });
  } } },
    given.extends ? notice("info", "Extending access: this request, once approved, takes over from the current grant.") : null,
    field("Resource", resource),
    info,
    field("Reason", reason, "What you need the access for, e.g. the incident."),
    h("fieldset", {},
      h("legend", {}, "Ticket"),
      h("p", { class: "hint" }, "Expire access when the ticket is closed: bind the request to a ticket assigned to you."),
      field("Connection", connection, listed ? "The ticket system the ticket is in." : "The ticket system's connection id, e.g. jira-main (ask your admin)."),
      field("Ticket key", key, "e.g. SEC-42, or type words of its summary and search."),
      search,
      results),
    h("fieldset", { "aria-describedby": "err-duration" },
      h("legend", {}, "Duration"),
      presets.map(([, choice]) => choice),
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
  // What was typed narrows the search (a key or words of the summary).
  const typed = key.value.trim();
  const base = `/v1/tickets?connection=${encodeURIComponent(connection)}${typed ? `&q=${encodeURIComponent(typed)}` : ""}`;
  const r = await api("GET", base);
  if (!r.ok) {
    results.replaceChildren();
    const [where] = explain(r.error);
    showErrors([{ field: where === "connection" ? "connection" : "ticket-key", content: errorBox(r.error) }]);
    return;
  }
  if (r.data.items.length === 0) {
    results.replaceChildren(h("p", {}, typed
      ? `No open ticket assigned to you in this connection matches “${typed}”.`
      : "No open tickets are assigned to you in this connection."));
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
    h("p", {}, `${r.data.items.length} open ticket(s) assigned to you${typed ? ` matching “${typed}”` : ""}:`),
    list);
  // The API answers a page at a time; `next` fetches the following one.
  let next = r.data.next;
  if (next) {
    const more = h("button", { type: "button", id: "more-tickets", on: { click: async () => {
      more.disabled = true;
      const page = await api("GET", `${base}&cursor=${encodeURIComponent(next)}`);
      if (!page.ok) {
        more.disabled = false;
        showErrors([{ field: "ticket-key", content: errorBox(page.error) }]);
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

// Where the end system stands for `g`, as [text, badge kind, last error]: granting access after approval,
// and removing it after the end. A grant is shown "active" in green only once access was granted.
function provisioningState(g) {
  const d = g.deprovisioning;
  if (d && g.status !== "active") {
    if (d.state === "pending") {
      return d.attempts ? [`removal failed — retrying (${d.attempts})`, "deprov-failed", d.last_error] : ["removal pending", "deprov-pending", null];
    }
    if (d.state === "failed") return [`removal failed after ${d.attempts} attempt(s)`, "deprov-failed", d.last_error];
    if (d.state === "done") return ["access removed", "deprov-done", null];
    if (d.state === "skipped") return ["nothing to remove", "deprov-skipped", d.reason || null];
  }
  const p = g.provisioning;
  if (g.status === "active" && p) {
    if (p.state === "pending") {
      return p.attempts ? [`granting failed — retrying (${p.attempts})`, "deprov-failed", p.last_error] : ["granting", "deprov-pending", null];
    }
    if (p.state === "failed") return [`granting failed after ${p.attempts} attempt(s)`, "deprov-failed", p.last_error];
    if (p.state === "done" || p.state === "skipped") return ["granted", "deprov-done", null];
  }
  return null;
}

// The grant's status badge: "active" says so only once access is granted in the end system.
function statusBadge(g) {
  const state = provisioningState(g);
  if (g.status === "active" && state && state[0] !== "granted") return badge(state[0], state[1]);
  return badge(g.status);
}

function endSystem(g) {
  const state = provisioningState(g);
  if (!state) return null;
  const [text, kind, lastError] = state;
  return h("span", { class: "provisioning" }, badge(text, kind),
    lastError ? h("span", { class: "error-text" }, ` Last error: ${lastError}`) : "");
}

// "Extend" and "Request again": the request form, prefilled with this grant's resource, ticket and reason.
function requestLink(g, extend) {
  const query = new URLSearchParams({ resource: g.resource, reason: g.reason, duration: g.duration });
  if (g.ticket) {
    query.set("connection", g.ticket.connection);
    query.set("ticket", g.ticket.key);
  }
  if (extend) query.set("extends", g.id);
  return h("a", { href: `#/request?${query}`, id: `${extend ? "extend" : "again"}-${g.id}` }, extend ? "Extend" : "Request again");
}

// One grant as a card, with the actions its viewer may take.
function grantCard(g, { actions = [], headingLevel = "h3", extra = null } = {}) {
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
  // When access really ended: the end system's confirmation, and sessions that outlive it.
  if (g.access_removed_at) pairs.push(["Access removed", when(g.access_removed_at)]);
  if (g.residual_until) pairs.push(["Sessions may last until", when(g.residual_until)]);
  pairs.push(["End system", endSystem(g)]);
  const titleId = `grant-title-${g.id}`;
  return h("article", { class: `grant ${g.status}`, id: `grant-${g.id}`, "aria-labelledby": titleId, "data-status": g.status },
    h(headingLevel, { id: titleId }, `${g.resource} `, statusBadge(g)),
    details(pairs),
    extra,
    h("div", { class: "actions" }, actions,
      headingLevel === "h3" ? h("a", { href: `#/grant/${encodeURIComponent(g.id)}` }, "Details and audit trail") : null));
}

// Keeps `container`'s cards true to `grants` in place: a card whose grant changed is replaced where it is (or
// moved to the section it now belongs to), new ones are added and gone ones removed; nothing else on the page
// moves, the scroll position stays, and focus stays on the element it was on (or its replacement).
function patchCards(sections, grants, cardFor, shown) {
  const focused = document.activeElement && document.activeElement.id;
  const initial = shown.size === 0;
  const seen = new Set();
  for (const g of grants) {
    const key = JSON.stringify(g);
    const target = sections.find((s) => s.holds(g));
    if (!target) continue;
    seen.add(g.id);
    const before = shown.get(g.id);
    if (before && before.key === key && before.section === target) continue;
    const card = cardFor(g);
    if (before && before.section === target) before.card.replaceWith(card);
    else {
      if (before) before.card.remove();
      if (initial) target.list.append(card);
      else target.list.prepend(card);
    }
    shown.set(g.id, { key, card, section: target });
  }
  for (const [id, { card }] of shown) {
    if (!seen.has(id)) {
      card.remove();
      shown.delete(id);
    }
  }
  for (const section of sections) section.empty.hidden = section.list.children.length > 0;
  if (focused && document.activeElement === document.body) {
    const again = document.getElementById(focused);
    if (again) again.focus({ preventScroll: true });
  }
}

function liveSection(title, id, empty, holds) {
  const list = h("div", { class: "cards" });
  const none = h("p", { class: "empty" }, empty);
  const element = h("section", { "aria-labelledby": id }, h("h2", { id }, title), list, none);
  return { element, list, empty: none, holds };
}

// A message that stays until dismissed (a refresh never takes it away).
function message(kind, ...content) {
  const box = notice(kind, ...content);
  box.append(" ", h("button", { type: "button", class: "link dismiss", on: { click: () => box.remove() } }, "Dismiss"));
  return box;
}

export async function viewAccess(main, _arg, ctx) {
  heading(main, "My access");
  const me = currentCaller();
  const result = h("div", { id: "access-result", "aria-live": "polite" });
  main.append(result);
  const path = `/v1/grants?requester=${encodeURIComponent(me.email)}&limit=200`;
  const r = await api("GET", path);
  if (!r.ok) {
    main.append(notice("error", errorBox(r.error)));
    return;
  }
  const shown = new Map();
  const sections = [
    liveSection("Pending", "pending-title", "No requests waiting for approval.", (g) => g.status === "pending"),
    liveSection("Active", "active-title", "No active access.", (g) => g.status === "active"),
    liveSection("Ended", "ended-title", "Nothing has ended yet.", (g) => !["pending", "active"].includes(g.status)),
  ];
  let refresh = () => {};
  const end = async (g, label) => {
    const answer = await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/revoke`);
    if (!answer.ok) {
      // A stale card (ended or decided elsewhere) says so in a sentence, and the page catches up.
      result.replaceChildren(message("error", errorBox(answer.error)));
      refresh();
      return;
    }
    result.replaceChildren(message("ok", `${label}: ${g.resource}.`));
    announce(`${label}: ${g.resource}`);
    refresh();
  };
  const cardFor = (g) => {
    const actions = [];
    if (g.status === "pending") {
      actions.push(confirmButton({ id: `withdraw-${g.id}`, label: "Withdraw", question: "Withdraw this request?", yes: "Yes, withdraw", act: () => end(g, "Withdrawn") }));
    } else if (g.status === "active") {
      actions.push(confirmButton({ id: `done-${g.id}`, label: "I'm done", primary: true, question: "End this access now?", yes: "Yes, end my access", act: () => end(g, "Access ended") }));
      actions.push(requestLink(g, true));
    } else {
      actions.push(requestLink(g, false));
    }
    return grantCard(g, { actions });
  };
  main.append(...sections.map((s) => s.element));
  patchCards(sections, r.data.items, cardFor, shown);
  const stop = watch(path, (data) => patchCards(sections, data.items, cardFor, shown), { etag: r.etag });
  refresh = async () => {
    const again = await api("GET", path);
    if (again.ok) patchCards(sections, again.data.items, cardFor, shown);
  };
  // Keep "time left" true.
  const timer = setInterval(() => {
    for (const el of document.querySelectorAll("[data-expires]")) el.textContent = timeLeft(el.dataset.expires);
  }, 30000);
  ctx.onLeave(() => {
    clearInterval(timer);
    stop();
  });
}

// Whether `me` may decide `g` (its resource's own approvers, or else the approver group), and if not, why.
function decidable(g, me, resource, approverGroup) {
  if (g.status !== "pending") return `Decided${g.decided_by ? ` by ${g.decided_by}` : ""}: ${g.status.replace(/_/g, " ")}.`;
  if (g.requester === me.email) return "Your own request: another approver decides it.";
  if ((g.approvals || []).some((a) => a.by === me.email)) return "You approved it; it waits for another approver.";
  const listed = resource && resource.approvers;
  if (listed && ((listed.users || []).length || (listed.groups || []).length)) {
    const email = me.email.toLowerCase();
    const mine = (listed.users || []).some((u) => u.toLowerCase() === email) || (listed.groups || []).some((gr) => me.groups.includes(gr));
    return mine ? null : "Only this resource's own approvers decide it.";
  }
  return hasGroup(approverGroup) ? null : "You are not an approver of this resource.";
}

export async function viewApprovals(main, _arg, ctx) {
  heading(main, "Approvals");
  const me = currentCaller();
  const result = h("div", { id: "approvals-result", "aria-live": "polite" });
  main.append(result);
  const path = "/v1/grants?status=pending&limit=200";
  const [r, catalogAnswer] = await Promise.all([api("GET", path), readResources()]);
  if (!r.ok) {
    main.append(notice("error", errorBox(r.error)));
    return;
  }
  const catalog = new Map(catalogAnswer.ok ? catalogAnswer.data.items.map((x) => [x.id, x]) : []);
  const tickets = new Map();
  const ticketOf = (g) => {
    if (!g.ticket) return null;
    const slot = h("p", { class: "ticket-summary", id: `ticket-${g.id}` });
    const known = tickets.get(g.id);
    const fill = (t) => {
      if (!t) return;
      slot.replaceChildren("Ticket: ", t.url ? h("a", { href: t.url, target: "_blank", rel: "noopener noreferrer" }, t.key) : t.key,
        ` — ${t.summary} (${t.status}${t.closed ? ", closed" : ""})`);
    };
    if (known) known.then(fill);
    else {
      // Servers without the ticket route answer 404: the card keeps the key it already shows.
      const asked = api("GET", `/v1/grants/${encodeURIComponent(g.id)}/ticket`).then((t) => (t.ok ? t.data : null));
      tickets.set(g.id, asked);
      asked.then(fill);
    }
    return slot;
  };
  const decide = async (g, verb, label) => {
    const comment = (document.getElementById(`comment-${g.id}`) || {}).value || "";
    const answer = await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/${verb}`, comment.trim() ? { comment: comment.trim() } : undefined);
    if (!answer.ok) {
      result.replaceChildren(message("error", errorBox(answer.error)));
      refresh();
      return;
    }
    result.replaceChildren(message("ok", `${label} ${g.requester}'s request for ${g.resource}.`));
    announce(`${label} ${g.requester}'s request`);
    decided.set(g.id, answer.data);
    refresh();
  };
  // Requests decided while this page was open stay on it, marked, until it is left.
  const decided = new Map();
  const cardFor = (g) => {
    const why = decidable(g, me, catalog.get(g.resource), ctx.config.approver_group);
    if (why) return grantCard(g, { extra: ticketOf(g), actions: [h("p", { class: "hint" }, why)] });
    const comment = h("textarea", { id: `comment-${g.id}`, rows: "1", maxlength: "2000" });
    return grantCard(g, { extra: [ticketOf(g), field("Comment (optional)", comment)], actions: [
      h("button", { type: "button", class: "primary", id: `approve-${g.id}`, on: { click: () => decide(g, "approve", "Approved") } }, "Approve"),
      h("button", { type: "button", id: `deny-${g.id}`, on: { click: () => decide(g, "deny", "Denied") } }, "Deny"),
    ] });
  };
  const shown = new Map();
  const waiting = liveSection("Waiting for a decision", "waiting-title", "Nothing is waiting for you.", () => true);
  main.append(waiting.element);
  const show = async (items) => {
    const ids = new Set(items.map((g) => g.id));
    // One that left the pending list was decided (here or elsewhere): read it once, to say by whom.
    for (const id of shown.keys()) {
      if (!ids.has(id) && !decided.has(id)) {
        const now = await api("GET", `/v1/grants/${encodeURIComponent(id)}`);
        if (now.ok) decided.set(id, now.data);
      }
    }
    patchCards([waiting], [...items, ...[...decided.values()].filter((g) => !ids.has(g.id))], cardFor, shown);
  };
  await show(r.data.items);
  const stop = watch(path, (data) => show(data.items), { etag: r.etag });
  const refresh = async () => {
    const again = await api("GET", path);
    if (again.ok) await show(again.data.items);
  };
  ctx.onLeave(stop);
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
  const path = `/v1/grants/${encodeURIComponent(id)}`;
  const [g, events] = await Promise.all([api("GET", path), listAll(`${path}/events`)]);
  if (!g.ok) {
    main.append(notice("error", errorBox(g.error)));
    return;
  }
  let card = grantCard(g.data, { headingLevel: "h2" });
  main.append(card);
  const trail = h("ol", { class: "trail", id: "audit-trail" });
  const showTrail = (items) => trail.replaceChildren(...items.map((e) => {
    const extra = e.detail && typeof e.detail === "object" ? Object.entries(e.detail).filter(([, v]) => v !== null && v !== "") : [];
    return h("li", {},
      when(e.at), " ", h("strong", {}, EVENT_NAMES[e.kind] || e.kind), ` by ${e.actor || "Ticketbound"} → ${e.status}`,
      extra.length ? h("span", { class: "hint" }, ` (${extra.map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")})`) : "");
  }));
  if (events.ok) showTrail(events.data.items);
  main.append(h("section", { "aria-labelledby": "trail-title" }, h("h2", { id: "trail-title" }, "Audit trail"),
    events.ok ? trail : notice("error", errorBox(events.error))));
  // The card and the trail follow the grant in place while the page is open.
  const stop = watch(path, async (now) => {
    const next = grantCard(now, { headingLevel: "h2" });
    card.replaceWith(next);
    card = next;
    const more = await listAll(`${path}/events`);
    if (more.ok) showTrail(more.data.items);
  }, { etag: g.etag });
  ctx.onLeave(stop);
}
