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

// Shows `message` in the error slot of field `id` (or clears it), marking the input invalid.
export function fieldError(id, message) {
  const slot = document.getElementById(`err-${id}`);
  const input = document.getElementById(id);
  if (slot) slot.textContent = message || "";
  if (input) {
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".error")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// A message box: kind is "ok", "error" or "info". Errors are alerts, the rest polite.
export function notice(kind, ...content) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...content);
}

export function errorText(error) {
  return `${error.message} (${error.code})`;
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
