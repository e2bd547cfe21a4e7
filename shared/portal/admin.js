// The admin's view: the resource catalog, and ticket-system connections as a wizard (Connect → Verify →
// the connection, its webhook URL, its secret shown once, and how to register the webhook). Resources and
// connections are both edited under the version opened (`If-Match`): a conflicting edit shows what changed.
// Delete sends the version the list was drawn with (each item's `version`), so a resource or connection another
// admin changed after the page was loaded is not deleted: the page says what changed and offers to reload.

import { api, listAll } from "./api.js";
import { h, field, fieldError, clearErrors, notice, errorText, errorBox, heading, when, humanDuration, badge, details, announce, confirmButton } from "./dom.js";

const MASK = "********";
// The kinds of ticket system as the API describes them (GET /v1/connection-kinds), by kind: every form field,
// label, hint, webhook URL and registration step below comes from there, so a new kind needs no change here.
let KINDS = {};

export async function viewAdmin(main, _arg, ctx) {
  heading(main, "Admin");
  const resources = h("section", { "aria-labelledby": "resources-title", id: "resources" });
  const connections = h("section", { "aria-labelledby": "connections-title", id: "connections" });
  main.append(resources, connections);
  await Promise.all([resourcesSection(resources, ctx), connectionsSection(connections, ctx)]);
}

// ----- resources -----------------------------------------------------------------------------------------

function resourceFieldOf(code) {
  return { invalid_id: "res-id", id_mismatch: "res-id", invalid_name: "res-name", invalid_description: "res-description",
    invalid_duration: "res-max", invalid_url: "res-url", invalid_secret: "res-secret",
    invalid_approvers: "res-approver-groups", invalid_approvals_required: "res-approvals", quorum_unreachable: "res-approvals",
    invalid_requesters: "res-requesters", invalid_auto_approve: "res-auto-approve" }[code] || "res-form";
}

// The fields of a resource the form edits, in one shape for what was opened, what is typed and what is stored
// now, so the three can be compared field by field.
const EDITED = ["name", "description", "max_duration", "require_ticket", "provisioner", "approvers", "approvals_required", "requesters", "auto_approve"];

function editedFields(res) {
  const out = {};
  for (const key of EDITED) out[key] = res[key] === undefined ? null : res[key];
  out.description = out.description || "";
  out.require_ticket = !!out.require_ticket;
  out.approvals_required = out.approvals_required || 1;
  return out;
}

// JSON with sorted keys: two values are the same when this is.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  return JSON.stringify(value === undefined ? null : value);
}

const same = (a, b) => canonical(a) === canonical(b);

const FIELD_NAMES = { name: "Name", description: "Description", max_duration: "Longest duration", require_ticket: "Ticket required",
  provisioner: "Provisioner", approvers: "Approvers", approvals_required: "Approvals required", requesters: "Who may request",
  auto_approve: "Approved without a person" };

// A field's value in words, for the conflict table.
function shown(key, value) {
  switch (key) {
    case "description": return value || "(empty)";
    case "max_duration": return value ? humanDuration(value) : "the deployment's maximum";
    case "require_ticket": return value ? "yes" : "no";
    case "provisioner": return value.kind === "webhook" ? `webhook to ${value.url}` : value.kind;
    case "approvers": return value ? [value.groups.length ? `groups ${value.groups.join(", ")}` : "", value.users.length ? `people ${value.users.join(", ")}` : ""].filter(Boolean).join("; ") : "the approver group";
    case "requesters": return value ? `groups ${value.join(", ")}` : "everyone";
    case "auto_approve": return value ? `requests bound to a ticket, up to ${humanDuration(value.max_duration)}` : "never";
    default: return String(value);
  }
}

const list = (text) => text.split(/[,\s]+/).map((v) => v.trim()).filter(Boolean);

// The precondition of a delete from the list: the version the item was listed at.
const ifMatch = (item) => (item.version ? { "If-Match": item.version } : {});

// A delete refused with 412: `what` (a resource or connection, by id) changed, or went, after the list was
// drawn, and nothing was deleted. `rows` are [setting, as listed, as stored now] of what changed; `reload`
// draws the section again from what is stored.
function staleDeleteNotice(what, error, rows, reload) {
  const again = h("button", { type: "button", id: "stale-delete-reload", on: { click: () => reload() } }, "Reload");
  const box = h("div", { class: "notice conflict", role: "alert" },
    h("p", {}, h("strong", {}, "Not deleted: "), error.current
      ? `Someone else changed ${what} after this page was loaded, so nothing was deleted. Reload to see it as it is now, then delete it again if you still mean to.`
      : `${what} was already deleted by someone else. Reload to see the list as it is now.`),
    rows.length
      ? h("div", { class: "table-wrap" }, h("table", {},
        h("caption", {}, "What changed since this page was loaded"),
        h("thead", {}, h("tr", {}, ["Setting", "When loaded", "Saved now"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map(([name, before, now]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, before), h("td", {}, now))))))
      : null,
    h("div", { class: "actions" }, again));
  setTimeout(() => again.focus());
  return box;
}

// Opens the editor on the resource as stored now, with its version (ETag), so the save can say which version it
// edits.
async function openEditor(id, formSlot, result, reload) {
  const answer = await api("GET", `/v1/resources/${encodeURIComponent(id)}`);
  if (!answer.ok) {
    result.replaceChildren(notice("error", errorBox(answer.error)));
    return;
  }
  formSlot.replaceChildren(resourceForm(answer.data, answer.etag, reload));
}

async function resourcesSection(section) {
  const result = h("div", { id: "resources-result", "aria-live": "polite" });
  section.replaceChildren(h("h2", { id: "resources-title" }, "Resources"), result);
  const r = await listAll("/v1/resources");
  if (!r.ok) {
    section.append(notice("error", errorBox(r.error)));
    return;
  }
  const reload = async (message) => {
    await resourcesSection(section);
    if (message) {
      document.getElementById("resources-result").replaceChildren(notice("ok", message));
      announce(message);
    }
  };
  const formSlot = h("div", { id: "resource-form-slot" });
  const remove = async (res) => {
    const answer = await api("DELETE", `/v1/resources/${encodeURIComponent(res.id)}`, undefined, ifMatch(res));
    if (answer.ok) return reload(`Deleted resource ${res.id}.`);
    if (answer.status === 412) {
      const [before, now] = [editedFields(res), answer.error.current ? editedFields(answer.error.current) : null];
      const rows = now ? EDITED.filter((k) => !same(before[k], now[k])).map((k) => [FIELD_NAMES[k], shown(k, before[k]), shown(k, now[k])]) : [];
      return result.replaceChildren(staleDeleteNotice(res.id, answer.error, rows, reload));
    }
    const why = answer.status === 409
      ? `A resource cannot be deleted while a pending or active grant uses it: ending that grant needs the resource's provisioner. End or deny the grant first (My access, Approvals), then delete. The server says: ${answer.error.message.replace(/`/g, "")}`
      : errorText(answer.error);
    result.replaceChildren(notice("error", `${res.id} was not deleted. ${why}`));
  };
  const rows = r.data.items.map((res) => h("tr", {},
    h("th", { scope: "row" }, res.id),
    h("td", {}, res.name),
    h("td", {}, res.max_duration ? humanDuration(res.max_duration) : "default"),
    h("td", {}, res.require_ticket ? "required" : "optional"),
    h("td", {}, res.provisioner.kind),
    h("td", { class: "actions" },
      h("button", { type: "button", id: `edit-resource-${res.id}`, on: { click: () => openEditor(res.id, formSlot, result, reload) } }, "Edit", h("span", { class: "visually-hidden" }, ` ${res.id}`)),
      confirmButton({ id: `delete-resource-${res.id}`, label: h("span", {}, "Delete", h("span", { class: "visually-hidden" }, ` ${res.id}`)), danger: true, question: `Delete ${res.id}?`, yes: "Yes, delete", act: () => remove(res) }))));
  section.append(
    r.data.items.length
      ? h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "visually-hidden" }, "The resource catalog"),
        h("thead", {}, h("tr", {}, ["Id", "Name", "Longest", "Ticket", "Provisioner", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows)))
      : h("p", { class: "empty" }, "No resources yet."),
    h("button", { type: "button", id: "new-resource", on: { click: () => formSlot.replaceChildren(resourceForm(null, null, reload)) } }, "New resource"),
    formSlot);
}

// The whole resource: its description, its provisioner and its approval policy. A save sends every field the
// stored resource has (the ones this form does not know included), with `If-Match` naming the version opened
// (`If-None-Match: *` for a new one): a resource changed meanwhile is never overwritten, the admin is shown
// what changed and may save their own changes on top of it.
function resourceForm(existing, etag, reload) {
  const p = existing ? existing.provisioner : { kind: "none" };
  const policy = existing || {};
  const id = h("input", { id: "res-id", type: "text", required: true, value: existing ? existing.id : "", readonly: !!existing, autocomplete: "off" });
  const name = h("input", { id: "res-name", type: "text", required: true, value: existing ? existing.name : "" });
  const description = h("textarea", { id: "res-description", rows: "2" });
  description.value = existing ? existing.description || "" : "";
  const max = h("input", { id: "res-max", type: "text", value: existing && existing.max_duration ? existing.max_duration : "", placeholder: "e.g. P1D" });
  const requireTicket = h("input", { id: "res-require-ticket", type: "checkbox", checked: existing && existing.require_ticket });
  const kind = h("select", { id: "res-kind" },
    h("option", { value: "none" }, "None: record only"),
    h("option", { value: "webhook" }, "Webhook: call your endpoint"),
    h("option", { value: "json" }, "Other (JSON, e.g. a ticket provisioner)"));
  kind.value = ["none", "webhook"].includes(p.kind) ? p.kind : "json";
  const url = h("input", { id: "res-url", type: "url", value: p.kind === "webhook" ? p.url : "" });
  const secret = h("input", { id: "res-secret", type: "password", autocomplete: "new-password",
    placeholder: p.kind === "webhook" ? `${MASK} (kept unless you type a new one)` : "at least 16 characters" });
  const json = h("textarea", { id: "res-json", rows: "4", spellcheck: "false" });
  json.value = JSON.stringify(p, null, 1);
  const approverGroups = h("input", { id: "res-approver-groups", type: "text", autocomplete: "off", value: policy.approvers ? policy.approvers.groups.join(", ") : "" });
  const approverUsers = h("input", { id: "res-approver-users", type: "text", autocomplete: "off", value: policy.approvers ? policy.approvers.users.join(", ") : "" });
  const approvals = h("input", { id: "res-approvals", type: "number", min: "1", max: "10", step: "1", value: String(policy.approvals_required || 1) });
  const requesters = h("input", { id: "res-requesters", type: "text", autocomplete: "off", value: policy.requesters ? policy.requesters.join(", ") : "" });
  const autoApprove = h("input", { id: "res-auto-approve", type: "text", autocomplete: "off", placeholder: "e.g. PT1H", value: policy.auto_approve ? policy.auto_approve.max_duration : "" });
  const webhookFields = h("div", {}, field("Endpoint URL", url), field("Signing secret", secret));
  const jsonFields = h("div", {}, field("Provisioner (JSON)", json, "Secrets read back as ******** are kept."));
  const conflictSlot = h("div", { id: "resource-conflict", "aria-live": "polite" });
  const showKind = () => {
    webhookFields.hidden = kind.value !== "webhook";
    jsonFields.hidden = kind.value !== "json";
  };
  kind.addEventListener("change", showKind);
  const opened = existing ? editedFields(existing) : null;
  let base = existing; // the stored resource a save applies to
  let version = etag;

  // What the form says, in the resource's shape; `null` when the provisioner JSON does not parse.
  const typed = () => {
    let provisioner = { kind: "none" };
    if (kind.value === "webhook") provisioner = { kind: "webhook", url: url.value.trim(), secret: secret.value || MASK };
    if (kind.value === "json") {
      try {
        provisioner = JSON.parse(json.value);
      } catch (e) {
        fieldError("res-json", `This is not JSON: ${e.message}`);
        return null;
      }
    }
    const groups = list(approverGroups.value);
    const users = list(approverUsers.value);
    const count = approvals.value.trim();
    return {
      name: name.value.trim(),
      description: description.value,
      max_duration: max.value.trim() || null,
      require_ticket: requireTicket.checked,
      provisioner,
      approvers: groups.length || users.length ? { groups, users } : null,
      approvals_required: /^\d+$/.test(count) ? Number(count) : count ? count : 1,
      requesters: list(requesters.value).length ? list(requesters.value) : null,
      auto_approve: autoApprove.value.trim() ? { max_duration: autoApprove.value.trim() } : null,
    };
  };

  const save = async (fields) => {
    const target = existing ? existing.id : id.value.trim();
    // Every field of the stored resource, then the form's: a field the form does not show is kept as it is.
    const body = { ...(base || {}), ...fields };
    delete body.id;
    const conditions = version ? { "If-Match": version } : { "If-None-Match": "*" };
    const answer = await api("PUT", `/v1/resources/${encodeURIComponent(target)}`, body, conditions);
    if (answer.status === 412) {
      showConflict(answer.error, fields);
      return;
    }
    if (!answer.ok) {
      const slot = kind.value === "json" && ["res-url", "res-secret"].includes(resourceFieldOf(answer.error.code)) ? "res-json" : resourceFieldOf(answer.error.code);
      fieldError(slot, errorBox(answer.error));
      return;
    }
    reload(`${answer.status === 201 ? "Created" : "Saved"} resource ${answer.data.id}.`);
  };

  // Somebody saved the resource after it was opened: show each field where what is stored now differs from
  // what this admin typed, and let them save their own changes (only the fields they changed) on top of the
  // new version, or start again from it.
  const showConflict = (error, mine) => {
    const current = error.current;
    if (!current) {
      conflictSlot.replaceChildren(notice("error", h("p", {}, "This resource was deleted while you were editing it. Nothing was saved."),
        h("details", {}, h("summary", {}, "Details"), h("code", {}, error.code), ` ${error.message}`)));
      return;
    }
    const theirs = editedFields(current);
    const changedByMe = EDITED.filter((k) => !opened || !same(mine[k], opened[k]));
    const rows = EDITED.filter((k) => !same(theirs[k], mine[k]))
      .map((k) => h("tr", {}, h("th", { scope: "row" }, FIELD_NAMES[k]), h("td", {}, shown(k, theirs[k])), h("td", {}, shown(k, mine[k]))));
    const onTop = {};
    for (const k of changedByMe) onTop[k] = mine[k];
    const retry = h("button", { type: "button", class: "primary", id: "resource-save-over", on: { click: () => {
      base = current;
      version = error.current_version;
      conflictSlot.replaceChildren();
      save({ ...theirs, ...onTop });
    } } }, "Save my changes on top of theirs");
    const restart = h("button", { type: "button", id: "resource-reload", on: { click: () => {
      const slot = form.parentElement;
      if (slot) slot.replaceChildren(resourceForm(current, error.current_version, reload));
    } } }, "Discard my changes and edit theirs");
    // Not an `.error` notice: that style is for one line, and this is a table to read.
    conflictSlot.replaceChildren(h("div", { class: "notice conflict", role: "alert" },
      h("p", {}, h("strong", {}, "Not saved: "), existing
        ? `Someone else saved ${current.id} while you were editing it. Nothing of yours was saved, and nothing of theirs was lost.`
        : `A resource ${current.id} already exists (someone created it while you were filling in the form). Nothing of yours was saved.`),
      rows.length
        ? h("div", { class: "table-wrap" }, h("table", {},
          h("caption", {}, "Where the saved resource and your form differ"),
          h("thead", {}, h("tr", {}, ["Field", "Saved now", "Yours"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows)))
        : h("p", {}, "Their change is the same as yours."),
      h("p", {}, changedByMe.length
        ? `Saving on top keeps their version and applies the fields you changed: ${changedByMe.map((k) => FIELD_NAMES[k]).join(", ")}.`
        : "You changed nothing: their version stays as it is."),
      h("div", { class: "actions" }, retry, restart)));
    retry.focus();
  };

  const form = h("form", { id: "resource-form", class: "panel", novalidate: true, on: { submit: async (event) => {
    event.preventDefault();
    clearErrors(form);
    conflictSlot.replaceChildren();
    const fields = typed();
    if (fields) await save(fields);
  } } },
    h("h3", {}, existing ? `Edit ${existing.id}` : "New resource"),
    field("Id", id, existing ? "Ids cannot change." : "Lower-case letters, digits, - and _, e.g. prod-db."),
    field("Name", name),
    field("Description", description, "Shown to requesters."),
    field("Longest duration", max, "ISO-8601, e.g. PT4H or P1D; empty for the deployment's maximum."),
    h("div", { class: "choice" }, requireTicket, h("label", { for: "res-require-ticket" }, "Requests must be bound to a ticket")),
    field("Provisioner", kind),
    webhookFields,
    jsonFields,
    h("fieldset", { id: "res-policy" }, h("legend", {}, "Approval policy"),
      field("Approver groups", approverGroups, "Comma-separated. Empty, with no people either: the deployment's approver group decides."),
      field("Approver people", approverUsers, "E-mail addresses, comma-separated."),
      field("Approvals required", approvals, "Distinct approvers, 1 to 10; the requester never counts."),
      field("Who may request", requesters, "Groups, comma-separated; empty: everyone signed in."),
      field("Approved without a person up to", autoApprove, "ISO-8601, e.g. PT1H, for requests bound to an open ticket assigned to the requester; empty: never.")),
    h("p", { class: "error", id: "err-res-form", "aria-live": "polite" }),
    conflictSlot,
    h("button", { type: "submit", class: "primary", id: "save-resource" }, existing ? "Save" : "Create resource"));
  showKind();
  setTimeout(() => name.focus(), 0);
  return form;
}

// ----- connections ---------------------------------------------------------------------------------------

function webhookUrl(c) {
  const path = KINDS[c.kind] ? KINDS[c.kind].webhook.path : `/webhooks/${c.kind}/{connection}`;
  return `${location.origin}${path.replace("{connection}", c.id)}`;
}

// A described step: `{url}` is this connection's webhook URL, and text between backticks is typed as is.
function describedStep(text, url) {
  return h("li", {}, text.replace(/\{url\}/g, url).split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part)));
}

// How to register the webhook in that ticket system (its description's steps, with this connection's URL).
function webhookSteps(c) {
  const url = webhookUrl(c);
  const described = KINDS[c.kind] ? KINDS[c.kind].webhook.steps : [];
  return h("ol", { class: "steps" }, described.map((step) => describedStep(step, url)));
}

function kindLabel(kind) {
  return KINDS[kind] ? KINDS[kind].label : kind;
}

function statusBadge(c) {
  return badge(c.status, `conn-${c.status}`);
}

function connectionCard(c, actions) {
  return h("article", { class: "connection", id: `connection-${c.id}`, "aria-labelledby": `connection-title-${c.id}` },
    h("h3", { id: `connection-title-${c.id}` }, `${c.id} `, statusBadge(c)),
    details([
      ["Kind", kindLabel(c.kind)],
      ["Site", c.base_url],
      ["Signs in as", c.email || c.username],
      ["Last verified", when(c.last_verified_at)],
      ["Last error", c.last_error ? h("span", { class: "error-text" }, c.last_error) : null],
      ["Webhook URL", h("code", { class: "webhook-url" }, webhookUrl(c))],
      ["Webhook secrets", `${c.webhook_secrets_active} active`],
    ]),
    h("details", {}, h("summary", {}, "How to register the webhook"), webhookSteps(c)),
    h("div", { class: "actions" }, actions));
}

async function connectionsSection(section) {
  const result = h("div", { id: "connections-result", "aria-live": "polite" });
  const wizardSlot = h("div", { id: "wizard-slot" });
  section.replaceChildren(h("h2", { id: "connections-title" }, "Ticket-system connections"), result);
  const [r, kinds] = await Promise.all([listAll("/v1/connections"), api("GET", "/v1/connection-kinds")]);
  if (!r.ok || !kinds.ok) {
    section.append(notice("error", errorBox(r.ok ? kinds.error : r.error)));
    return;
  }
  KINDS = Object.fromEntries(kinds.data.items.map((k) => [k.kind, k]));
  const reload = async (message, kind = "ok") => {
    await connectionsSection(section);
    if (message) {
      document.getElementById("connections-result").replaceChildren(notice(kind, message));
      announce(message);
    }
  };
  const verify = async (c) => {
    const answer = await api("POST", `/v1/connections/${encodeURIComponent(c.id)}/verify`);
    if (!answer.ok) return reload(`${c.id}: ${errorText(answer.error)}`, "error");
    reload(answer.data.verified ? `${c.id} is connected.` : `${c.id}: the credentials were refused: ${answer.data.last_error}`, answer.data.verified ? "ok" : "error");
  };
  const remove = async (c, endGrants) => {
    const answer = await api("DELETE", `/v1/connections/${encodeURIComponent(c.id)}${endGrants ? "?end_grants=true" : ""}`, undefined, ifMatch(c));
    if (answer.ok) return reload(endGrants ? `Ended the access bound to ${c.id} and deleted it.` : `Deleted connection ${c.id}.`);
    if (answer.status === 412) {
      const now = answer.error.current;
      const rows = now ? CONNECTION_FIELDS.filter(([, of]) => of(now) !== of(c)).map(([name, of]) => [name, of(c), of(now)]) : [];
      return result.replaceChildren(staleDeleteNotice(c.id, answer.error, rows, reload));
    }
    if (answer.status !== 409 || answer.error.code !== "connection_in_use") return result.replaceChildren(notice("error", errorBox(answer.error)));
    result.replaceChildren(notice("error",
      h("p", {}, `${c.id} was not deleted: ${answer.error.message.replace(/`/g, "")}`),
      h("p", {}, "Grants bound to its tickets end when those tickets close, which only this connection's webhooks can tell, so a connection is deleted only once nothing is bound to it. You can end that access now: each grant ends as \"connection removed\" and its access is removed in the end system."),
      confirmButton({ id: `end-grants-delete-${c.id}`, label: `End their access and delete ${c.id}`, danger: true, question: `End every grant bound to ${c.id} now and delete it?`, yes: "Yes, end their access and delete", act: () => remove(c, true) })));
  };
  section.append(
    r.data.items.length
      ? h("div", { class: "cards wide" }, r.data.items.map((c) => connectionCard(c, [
        h("button", { type: "button", id: `verify-${c.id}`, on: { click: () => verify(c) } }, "Verify"),
        h("button", { type: "button", id: `edit-connection-${c.id}`, on: { click: () => openConnectionEditor(c.id, wizardSlot, result, reload) } }, "Edit"),
        confirmButton({ id: `delete-connection-${c.id}`, label: "Delete", danger: true, question: `Delete ${c.id}?`, yes: "Yes, delete", act: () => remove(c, false) }),
      ])))
      : h("p", { class: "empty" }, "No connections yet."),
    h("button", { type: "button", id: "new-connection", on: { click: () => wizardSlot.replaceChildren(wizard(reload)) } }, "Connect a ticket system"),
    wizardSlot);
}

function steps(current) {
  return h("ol", { class: "wizard-steps", "aria-label": "Steps" },
    ["Connect", "Verify", "Webhook"].map((s, i) => h("li", { "aria-current": i === current ? "step" : null, class: i === current ? "current" : null }, s)));
}

// A described field's input id: `conn-api-token` for `api_token`.
const inputId = (f) => `conn-${f.name.replace(/_/g, "-")}`;

// The credential inputs of a kind: its described fields after the first (the address). `editing` leaves secrets
// empty with a masked placeholder.
function credentialFields(kind, editing, c = {}) {
  const fields = KINDS[kind] ? KINDS[kind].fields.slice(1) : [];
  const out = [];
  let group = null;
  for (const f of fields) {
    if (f.group && group && f.group !== group) out.push(h("p", { class: "hint" }, "Or instead:"));
    group = f.group || group;
    const hint = f.required || f.group ? f.help : `${f.help} (optional)`;
    if (f.choices) {
      out.push(field(f.label, h("select", { id: inputId(f) }, h("option", { value: "" }, "—"),
        f.choices.map((choice) => h("option", { value: choice, selected: c[f.name] === choice ? true : null }, choice))), hint));
    } else if (f.secret) {
      out.push(field(f.label, h("input", { id: inputId(f), type: "password", autocomplete: "new-password",
        placeholder: editing ? `${MASK} (kept unless you type a new one)` : "" }), hint));
    } else {
      out.push(field(f.label, h("input", { id: inputId(f), type: "text", autocomplete: "off", value: c[f.name] || "" }), hint));
    }
  }
  return out;
}

// The described credential fields that were filled in.
function readCredentials(kind, body) {
  for (const f of KINDS[kind] ? KINDS[kind].fields.slice(1) : []) {
    const el = document.getElementById(inputId(f));
    if (el && el.value.trim()) body[f.name] = el.value.trim();
  }
  return body;
}

// The first described field is where the system is; a full URL there is always sent as `base_url`.
function siteBody(kind, text, body) {
  if (!text) return body;
  const name = KINDS[kind] ? KINDS[kind].fields[0].name : "base_url";
  body[/^https?:\/\//.test(text) ? "base_url" : name] = text;
  return body;
}

function connectionFieldOf(code) {
  if (/id/.test(code) && !/valid_url/.test(code)) return "conn-id";
  if (/url|site|domain/.test(code)) return "conn-site";
  if (/closed/.test(code)) return "conn-closed";
  if (/secret|token|password|key|credential|email|username/.test(code)) return "conn-credentials";
  return "conn-form";
}

function wizard(reload) {
  const slot = h("div", { id: "wizard", class: "panel" });
  const id = h("input", { id: "conn-id", type: "text", required: true, autocomplete: "off", placeholder: "e.g. jira-main" });
  const kind = h("select", { id: "conn-kind" }, Object.values(KINDS).map((k) => h("option", { value: k.kind }, k.label)));
  const site = h("input", { id: "conn-site", type: "text", required: true, autocomplete: "off", spellcheck: "false" });
  const siteField = h("div", {});
  const credentials = h("fieldset", { id: "conn-credentials-set" });
  const closed = h("input", { id: "conn-closed", type: "text", placeholder: "optional, comma-separated" });
  const closedField = h("div", {});
  const showKind = () => {
    const described = KINDS[kind.value];
    if (!described) return;
    siteField.replaceChildren(field(described.fields[0].label, site, described.fields[0].help));
    closedField.replaceChildren(field("Closed statuses", closed, described.closed_statuses.help));
    credentials.replaceChildren(h("legend", {}, "Credentials"), ...credentialFields(kind.value, false),
      h("p", { class: "error", id: "err-conn-credentials", "aria-live": "polite" }));
  };
  kind.addEventListener("change", showKind);
  const form = h("form", { id: "connect-form", novalidate: true, on: { submit: async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = readCredentials(kind.value, siteBody(kind.value, site.value.trim(), { id: id.value.trim(), kind: kind.value }));
    if (closed.value.trim()) body.closed_statuses = closed.value.split(",").map((s) => s.trim()).filter(Boolean);
    const answer = await api("POST", "/v1/connections", body);
    if (!answer.ok) {
      fieldError(connectionFieldOf(answer.error.code), errorBox(answer.error));
      return;
    }
    verifyStep(slot, answer.data, reload);
  } } },
    field("Connection id", id, "Used in webhook URLs and by requesters, e.g. jira-main."),
    field("Ticket system", kind),
    siteField,
    credentials,
    closedField,
    h("p", { class: "error", id: "err-conn-form", "aria-live": "polite" }),
    h("button", { type: "submit", class: "primary", id: "connect" }, "Connect"));
  showKind();
  slot.append(h("h3", { tabindex: "-1" }, "Connect a ticket system"), steps(0), form);
  setTimeout(() => id.focus(), 0);
  return slot;
}

// Step 2: what the credentials saw. The created connection's webhook secret is kept in memory until step 3.
async function verifyStep(slot, created, reload) {
  const title = h("h3", { tabindex: "-1" }, `Verify ${created.id}`);
  const out = h("div", { id: "verify-result", "aria-live": "polite" }, h("p", {}, "Checking the credentials…"));
  slot.replaceChildren(title, steps(1), out);
  title.focus();
  const answer = await api("POST", `/v1/connections/${encodeURIComponent(created.id)}/verify`);
  const c = answer.ok ? answer.data : created;
  const seen = [];
  if (c.account) seen.push(h("p", {}, "Signed in as ", h("strong", {}, c.account.display_name || c.account.email || c.account.id), c.account.email ? ` (${c.account.email})` : ""));
  if (c.projects) seen.push(h("p", {}, `Projects these credentials see: ${c.projects.map((p) => `${p.key} (${p.name})`).join(", ") || "none"}`));
  out.replaceChildren(
    answer.ok
      ? notice(c.verified ? "ok" : "error", h("p", {}, statusBadge(c), c.verified ? " The credentials work." : ` The credentials were refused: ${c.last_error}`), seen)
      : notice("error", errorBox(answer.error)),
    h("button", { type: "button", class: "primary", id: "wizard-continue", on: { click: () => webhookStep(slot, { ...c, webhook_secret: created.webhook_secret }, reload) } },
      c.verified ? "Continue" : "Continue anyway (fix the credentials with Edit)"));
}

// Step 3: the connection, its webhook URL and secret (shown this once), and the registration steps.
function webhookStep(slot, c, reload) {
  const title = h("h3", { tabindex: "-1" }, `${c.id} is set up`);
  const secret = h("input", { id: "webhook-secret", type: "text", readonly: true, value: c.webhook_secret, spellcheck: "false" });
  const copied = h("span", { id: "copy-state", "aria-live": "polite" });
  const copy = h("button", { type: "button", id: "copy-secret", on: { click: async () => {
    try {
      await navigator.clipboard.writeText(secret.value);
      copied.textContent = "Copied.";
    } catch {
      secret.select();
      copied.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  } } }, "Copy");
  slot.replaceChildren(title, steps(2),
    connectionCard(c, []),
    h("div", { class: "notice info secret" },
      field("Webhook secret", secret, "Shown this once: keep it for the webhook below. It cannot be read back; Edit can generate a new one."),
      copy, copied),
    h("h4", {}, `Register the webhook in ${kindLabel(c.kind)}`),
    webhookSteps(c),
    h("button", { type: "button", id: "wizard-done", on: { click: () => reload(`Connection ${c.id} added.`) } }, "Done"));
  title.focus();
}

// Opens the editor on the connection as stored now, with its version (ETag), so the save can say which version
// it edits.
async function openConnectionEditor(id, slot, result, reload) {
  const answer = await api("GET", `/v1/connections/${encodeURIComponent(id)}`);
  if (!answer.ok) {
    result.replaceChildren(notice("error", errorBox(answer.error)));
    return;
  }
  slot.replaceChildren(editForm(answer.data, answer.etag, reload));
}

// The settings of a connection an admin can see changed, in words, for the conflict table.
const CONNECTION_FIELDS = [
  ["Site", (c) => c.base_url],
  ["Signs in as", (c) => c.email || c.username || "—"],
  ["Closed statuses", (c) => (Array.isArray(c.closed_statuses) && c.closed_statuses.length ? c.closed_statuses.join(", ") : "the default")],
  ["Webhook secrets", (c) => `${c.webhook_secrets_active} active`],
  ["Last changed", (c) => (c.updated_at ? new Date(c.updated_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "—")],
];

// The connection editor. A save sends only the fields the admin changed, with `If-Match` naming the version
// opened: a connection another admin changed meanwhile is never overwritten; this admin is shown what changed
// and may send their change again on top of it, or start again from it.
function editForm(c, etag, reload) {
  const slot = h("div", { id: "edit-connection", class: "panel" });
  let version = etag;
  const site = h("input", { id: "conn-site", type: "text", value: c.base_url, spellcheck: "false" });
  const closed = h("input", { id: "conn-closed", type: "text", value: Array.isArray(c.closed_statuses) ? c.closed_statuses.join(", ") : "" });
  const regenerate = h("input", { id: "conn-new-secret", type: "checkbox" });
  const out = h("div", { id: "edit-result", "aria-live": "polite" });
  const conflictSlot = h("div", { id: "connection-conflict", "aria-live": "polite" });

  const save = async (body) => {
    const answer = await api("PATCH", `/v1/connections/${encodeURIComponent(c.id)}`, body, version ? { "If-Match": version } : {});
    if (answer.status === 412) {
      showConflict(answer.error, body);
      return;
    }
    if (!answer.ok) {
      fieldError(connectionFieldOf(answer.error.code), errorBox(answer.error));
      return;
    }
    if (answer.data.webhook_secret && answer.data.webhook_secret !== MASK) {
      webhookStep(slot, answer.data, reload);
      return;
    }
    reload(`Saved connection ${c.id}. Verify it to check the credentials.`);
  };

  // Somebody changed the connection after it was opened: nothing of this admin's was saved. Show where the
  // stored connection now differs from the one opened, and let them send their change again on top of it.
  const showConflict = (error, mine) => {
    const current = error.current;
    if (!current) {
      conflictSlot.replaceChildren(notice("error", h("p", {}, `${c.id} was deleted while you were editing it. Nothing was saved.`),
        h("details", {}, h("summary", {}, "Details"), h("code", {}, error.code), ` ${error.message}`)));
      return;
    }
    const rows = CONNECTION_FIELDS.filter(([, of]) => of(current) !== of(c))
      .map(([name, of]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, of(c)), h("td", {}, of(current))));
    const yours = Object.keys(mine).map((k) => (k === "new_webhook_secret" ? "a new webhook secret" : k.replace(/_/g, " ")));
    const retry = h("button", { type: "button", class: "primary", id: "connection-save-over", on: { click: () => {
      version = error.current_version;
      conflictSlot.replaceChildren();
      save(mine);
    } } }, "Save my changes on top of theirs");
    const restart = h("button", { type: "button", id: "connection-reload", on: { click: () => {
      slot.replaceWith(editForm(current, error.current_version, reload));
    } } }, "Discard my changes and edit theirs");
    conflictSlot.replaceChildren(h("div", { class: "notice conflict", role: "alert" },
      h("p", {}, h("strong", {}, "Not saved: "), `Someone else changed ${c.id} while you were editing it. Nothing of yours was saved, and nothing of theirs was lost.`),
      rows.length
        ? h("div", { class: "table-wrap" }, h("table", {},
          h("caption", {}, "What changed since you opened it"),
          h("thead", {}, h("tr", {}, ["Setting", "When you opened it", "Saved now"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows)))
        : null,
      h("p", {}, yours.length
        ? `Saving on top sends only what you changed (${yours.join(", ")}) to their version.`
        : "You changed nothing: their version stays as it is."),
      h("div", { class: "actions" }, retry, restart)));
    retry.focus();
  };

  const form = h("form", { novalidate: true, on: { submit: async (event) => {
    event.preventDefault();
    clearErrors(form);
    conflictSlot.replaceChildren();
    const body = readCredentials(c.kind, {});
    if (site.value.trim() && site.value.trim() !== c.base_url) body.base_url = site.value.trim();
    const statuses = closed.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (closed.value !== (Array.isArray(c.closed_statuses) ? c.closed_statuses.join(", ") : "")) body.closed_statuses = statuses;
    if (regenerate.checked) body.new_webhook_secret = true;
    await save(body);
  } } },
    field(KINDS[c.kind] ? KINDS[c.kind].fields[0].label : "Base URL", site),
    h("fieldset", { id: "conn-credentials-set" }, h("legend", {}, "Credentials"), credentialFields(c.kind, true, c),
      h("p", { class: "error", id: "err-conn-credentials", "aria-live": "polite" })),
    field("Closed statuses", closed),
    h("div", { class: "choice" }, regenerate, h("label", { for: "conn-new-secret" }, "Add a new webhook secret (shown once; the old one keeps working until retired)")),
    h("p", { class: "error", id: "err-conn-form", "aria-live": "polite" }),
    conflictSlot,
    h("button", { type: "submit", class: "primary", id: "save-connection" }, "Save"),
    out);
  slot.append(h("h3", {}, `Edit ${c.id}`), form);
  return slot;
}
