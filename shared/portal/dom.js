// Small DOM helpers. Every text from the API goes into the page as text (never as HTML), so nothing a
// requester types can run as script; the CSP forbids inline script anyway.

// h("p", {class: "x", on: {click: f}}, "text", child) → element.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === "text") {
      el.textContent = value;
    } else if (key === "value") {
      el.value = value;
    } else if (key === "checked") {
      el.checked = !!value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Says `message` to screen readers through the page's polite live region.
export function announce(message) {
  const region = document.getElementById("status");
  region.textContent = "";
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

// A labelled form field with its hint and its error slot (aria-describedby ties them to the input).
export function field(label, input, hint) {
  const id = input.id;
  const errorId = `err-${id}`;
  const hintId = hint ? `hint-${id}` : null;
  input.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "error", id: errorId, "aria-live": "polite" }),
  );
}

// Shows `message` (text or an element, e.g. an `errorBox`) in the error slot of field `id` (or clears it),
// marking the input invalid.
export function fieldError(id, message) {
  const slot = document.getElementById(`err-${id}`);
  const input = document.getElementById(id);
  if (slot) slot.replaceChildren(message || "");
  if (input) {
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".error")) slot.replaceChildren();
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// A message box: kind is "ok", "error" or "info". Errors are alerts, the rest polite.
export function notice(kind, ...content) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...content);
}

// The plain sentence for `error`, for places that take text (no code, no code-style quoting).
export function errorText(error) {
  return explain(error)[1];
}

// What the page says for an API error code: the form field it concerns and a plain sentence. Codes not listed
// show the API's own message (without its code-style quoting); the code itself stays in a <details> element
// for whoever reports the problem.
const ERRORS = {
  unknown_resource: ["resource", "That resource does not exist (any more). Choose another one."],
  resource_missing: ["resource", "That resource does not exist (any more). Choose another one."],
  not_allowed: ["resource", "You may not request this resource. Ask an admin which groups may."],
  not_a_requester: ["resource", "You may not request this resource. Ask an admin which groups may."],
  invalid_reason: ["reason", "Say what you need the access for (up to 2,000 characters)."],
  invalid_duration: ["duration", "That duration is not one the portal understands: use e.g. PT30M, PT4H or P2D."],
  indefinite_requires_ticket: ["duration", "Access until the ticket is closed must be bound to a ticket: choose a connection and a ticket, or a fixed duration."],
  duration_too_long: ["duration", "That is longer than this resource allows. Choose a shorter duration."],
  ticket_required: ["ticket-key", "This resource requires a ticket: choose a connection and a ticket assigned to you."],
  unknown_connection: ["connection", "There is no such connection. Choose one from the list."],
  connection_not_found: ["connection", "There is no such connection. Choose one from the list."],
  connection_needs_reauthorization: ["connection", "This connection needs an admin to sign in to the ticket system again."],
  invalid_ticket_key: ["ticket-key", "That is not a ticket key (e.g. SEC-42). Search, then pick a ticket."],
  ticket_not_found: ["ticket-key", "No such ticket was found in this connection."],
  ticket_closed: ["ticket-key", "That ticket is already closed. Pick an open ticket."],
  not_assignee: ["ticket-key", "That ticket is not assigned to you."],
  requester_not_verifiable: ["ticket-key", "The ticket system could not confirm who you are. Ask an admin to check the connection."],
  ticket_system_unavailable: ["ticket-key", "The ticket system did not answer. Try again in a minute."],
  grant_already_closed: ["request", "This has already ended or been decided; the page now shows where it stands."],
  grant_not_pending: ["request", "This request has already been decided; the page now shows where it stands."],
  already_approved: ["request", "You have already approved this request."],
  self_approval: ["request", "You cannot decide your own request; another approver does."],
  not_an_approver: ["request", "You are not one of the approvers of this request."],
  not_a_resource_approver: ["request", "You are not one of the approvers of this resource."],
  grant_busy: ["request", "Someone else is changing this right now. Try again in a moment."],
  network: ["request", "The server could not be reached. Check your connection and try again."],
  unauthenticated: ["request", "Your sign-in has expired. Sign in again."],
};

// [field, sentence] for `error`.
export function explain(error) {
  const known = ERRORS[error.code];
  if (known) return known;
  const sentence = String(error.message || "Something went wrong.").replace(/`/g, "");
  return ["request", sentence.charAt(0).toUpperCase() + sentence.slice(1)];
}

// The plain sentence for `error`, with the API's code and message folded away in a <details> element.
export function errorBox(error) {
  const [, sentence] = explain(error);
  return h("span", { class: "explained" }, sentence, " ",
    h("details", { class: "code" }, h("summary", {}, "Details"), h("code", {}, error.code), ` ${error.message || ""}`));
}

// Shows every error of `errors` ([{field, sentence or node}]) at once, then focuses and scrolls to the first
// field in error (so on a phone it is on screen). Returns whether there was any.
export function showErrors(errors) {
  let first = null;
  for (const { field: id, content } of errors) {
    const slot = document.getElementById(`err-${id}`);
    const input = document.getElementById(id);
    if (slot) slot.replaceChildren(content);
    if (input) input.setAttribute("aria-invalid", "true");
    first = first || input || slot;
  }
  if (first) {
    if (typeof first.focus === "function" && first.tabIndex < 0 && !["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(first.tagName)) first.setAttribute("tabindex", "-1");
    first.focus({ preventScroll: true });
    first.scrollIntoView({ block: "center" });
  }
  return errors.length > 0;
}

export function heading(main, text) {
  const h1 = h("h1", { tabindex: "-1" }, text);
  main.append(h1);
  return h1;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
}

// "PT4H" → "4 hours", "P1DT12H" → "1 day 12 hours"; anything else as given.
export function humanDuration(iso) {
  if (iso === "indefinite") return "until the ticket is closed";
  const m = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(iso || "");
  if (!m) return iso || "—";
  const names = ["week", "day", "hour", "minute", "second"];
  const parts = m.slice(1).map((v, i) => (v && +v ? `${+v} ${names[i]}${+v === 1 ? "" : "s"}` : null)).filter(Boolean);
  return parts.length ? parts.join(" ") : iso;
}

// "3 h 12 min left" until `iso`, or "ending now" once it has passed.
export function timeLeft(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (ms <= 0) return "ending now";
  const minutes = Math.ceil(ms / 60000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  return [days ? `${days} d` : "", hours ? `${hours} h` : "", !days && mins ? `${mins} min` : ""].filter(Boolean).join(" ") + " left";
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text.replace(/_/g, " "));
}

// A term/description list from [term, description] pairs, skipping empty descriptions.
export function details(pairs) {
  return h("dl", {}, pairs.filter(([, d]) => d !== null && d !== undefined && d !== "").map(([t, d]) => [h("dt", {}, t), h("dd", {}, d)]));
}

// A button that asks before it acts: the first click shows "Yes, …" and "Cancel" in its place.
export function confirmButton({ id, label, question, yes, primary, danger, act }) {
  const slot = h("span", { class: "confirm" });
  const ask = h("button", { type: "button", id, class: primary ? "primary" : danger ? "danger" : null, on: { click: () => {
    const cancel = h("button", { type: "button", id: `cancel-${id}`, on: { click: () => {
      slot.replaceChildren(ask);
      ask.focus();
    } } }, "Cancel");
    const confirm = h("button", { type: "button", class: "danger", id: `confirm-${id}`, on: { click: () => {
      confirm.disabled = true;
      // Once acted, the question goes: the page re-renders on success; on a refusal the button is back.
      Promise.resolve(act()).finally(() => { if (slot.isConnected) slot.replaceChildren(ask); });
    } } }, yes);
    slot.replaceChildren(h("span", { class: "question" }, question), " ", confirm, cancel);
    confirm.focus();
  } } }, label);
  slot.append(ask);
  return slot;
}
