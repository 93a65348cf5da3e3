// Building blocks of the console's pages. Elements are made with `h`, never from HTML strings,
// so nothing the API returns can become markup.

import { ApiError } from "./api.js";

/**
 * @typedef {import('../types/client').Child} Child
 * @typedef {Record<string, any>} Attrs
 */

/**
 * An element: `h("button", { class: "primary", onclick }, "Save")`.
 * @param {string} tag
 * @param {Attrs | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in el) /** @type {any} */ (el).value = value;
    else if (key === "checked" || key === "selected") /** @type {any} */ (el)[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {any[]} children
 */
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/**
 * Replaces an element's content.
 * @param {Element} el
 * @param {...Child} children
 */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
/** A fresh id for label/input pairs. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/**
 * A labelled form field around an input (the label names it for assistive technology).
 * @param {string} label
 * @param {HTMLElement} input
 * @param {string} [hint]
 */
export function field(label, input, hint) {
  const id = input.id || uid();
  input.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  const checkbox = input instanceof HTMLInputElement && input.type === "checkbox";
  return h(
    "div",
    { class: checkbox ? "field check" : "field" },
    checkbox ? [input, h("label", { for: id }, label)] : [h("label", { for: id }, label), input],
    hint && h("p", { class: "hint", id: hintId }, hint),
  );
}

/**
 * Proposes a slug from a display name as it is typed, until the person edits the slug.
 * @param {HTMLInputElement} name
 * @param {HTMLInputElement} slug
 */
export function proposeSlug(name, slug) {
  name.addEventListener("input", () => {
    if (!slug.dataset.edited) slug.value = name.value.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  });
  slug.addEventListener("input", () => (slug.dataset.edited = "1"));
}

/**
 * @param {string} name
 * @param {Attrs} [attrs]
 */
export function input(name, attrs = {}) {
  return /** @type {HTMLInputElement} */ (h("input", { name, type: "text", ...attrs }));
}

/**
 * @param {string} name
 * @param {[string, string][]} options  value, label
 * @param {string} [selected]
 * @param {Attrs} [attrs]
 */
export function select(name, options, selected, attrs = {}) {
  return /** @type {HTMLSelectElement} */ (
    h("select", { name, ...attrs }, options.map(([value, label]) => h("option", { value, selected: value === selected }, label)))
  );
}

/** The problem's words and request id, where a person will see them. */
export function problem(/** @type {unknown} */ error) {
  const e = error instanceof ApiError ? error : new ApiError(0, { detail: String(error instanceof Error ? error.message : error) });
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("strong", null, e.status ? `${e.message}` : e.message),
    e.errors.length > 0 && h("ul", null, e.errors.map((f) => h("li", null, h("code", null, f.field), ": ", f.message))),
    e.requestId && h("p", { class: "hint" }, "Request id: ", h("code", null, e.requestId)),
  );
}

/**
 * A form whose submit runs `action`, disabling its buttons meanwhile and showing the problem
 * inside the form when it fails.
 * @param {Attrs} attrs
 * @param {Child[]} children
 * @param {(data: FormData, form: HTMLFormElement) => Promise<void>} action
 */
export function form(attrs, children, action) {
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const f = /** @type {HTMLFormElement} */ (h("form", { ...attrs, novalidate: false }, children, status));
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = [...f.querySelectorAll("button")];
    buttons.forEach((b) => (b.disabled = true));
    status.replaceChildren();
    f.setAttribute("aria-busy", "true");
    try {
      await action(new FormData(f), f);
    } catch (e) {
      status.replaceChildren(problem(e));
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      f.removeAttribute("aria-busy");
    }
  });
  return f;
}

/**
 * A short message that fades on its own.
 * @param {string} message
 */
export function toast(message) {
  const region = document.getElementById("toasts");
  if (!region) return;
  const item = h("div", { class: "toast" }, message);
  region.append(item);
  setTimeout(() => item.remove(), 4000);
}

/**
 * A table with a header row; `rows` empty shows `empty` instead.
 * @param {string} caption
 * @param {string[]} headers
 * @param {Child[][]} rows
 * @param {Child} empty
 */
export function table(caption, headers, rows, empty) {
  if (rows.length === 0) return h("div", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      null,
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows.map((r) => h("tr", null, r.map((c) => h("td", null, c))))),
    ),
  );
}

/**
 * @param {string} text
 * @param {string} [tone] ok, warn, bad, info
 */
export function badge(text, tone = "info") {
  return h("span", { class: `badge ${tone}` }, text);
}

/** @param {string | null | undefined} iso */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return h("time", { datetime: iso, title: d.toISOString() }, d.toLocaleString());
}

/**
 * A page's title and its main actions.
 * @param {string} title
 * @param {Child[]} [actions]
 * @param {Child} [lead]
 */
export function header(title, actions = [], lead) {
  return h(
    "header",
    { class: "page-head" },
    h("div", null, h("h1", { tabindex: "-1" }, title), lead && h("p", { class: "lead" }, lead)),
    actions.length > 0 && h("div", { class: "actions" }, actions),
  );
}

/**
 * A button.
 * @param {string} label
 * @param {(e: Event) => void} onclick
 * @param {string} [kind] primary, secondary, danger, link
 * @param {Attrs} [attrs]
 */
export function button(label, onclick, kind = "secondary", attrs = {}) {
  return h("button", { type: "button", class: kind, onclick, ...attrs }, label);
}

/**
 * A link that looks like a button.
 * @param {string} label
 * @param {string} href
 * @param {string} [kind]
 */
export function linkButton(label, href, kind = "secondary") {
  return h("a", { class: `button ${kind}`, href }, label);
}

/**
 * Asks before a destructive action, in a modal dialog (Escape cancels; focus returns).
 * @param {string} question
 * @param {string} confirmLabel
 * @returns {Promise<boolean>}
 */
export function confirmAction(question, confirmLabel) {
  return new Promise((resolve) => {
    const opener = /** @type {HTMLElement | null} */ (document.activeElement);
    const dialog = /** @type {HTMLDialogElement} */ (h("dialog", { class: "modal", "aria-labelledby": "confirm-title" }));
    const done = (/** @type {boolean} */ answer) => {
      dialog.close();
      dialog.remove();
      opener?.focus();
      resolve(answer);
    };
    mount(
      dialog,
      h("h2", { id: "confirm-title" }, question),
      h("div", { class: "actions" }, button("Cancel", () => done(false)), button(confirmLabel, () => done(true), "danger")),
    );
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/**
 * A paged list: loads a page with `load(cursor)`, renders it with `render(items)`, and offers
 * the next page while there is one.
 * @template T
 * @param {(cursor?: string) => Promise<{ items: T[], next_cursor?: string | null }>} load
 * @param {(items: T[]) => Node} render
 */
export function paged(load, render) {
  const box = h("div", { class: "paged" }, h("p", { class: "loading" }, "Loading…"));
  /** @type {T[]} */
  let shown = [];
  const show = async (/** @type {string} */ cursor = undefined) => {
    try {
      const page = await load(cursor);
      shown = cursor ? shown.concat(page.items) : page.items;
      const more = page.next_cursor;
      mount(box, render(shown), more && h("div", { class: "pager" }, button(`Load more`, () => show(more))));
    } catch (e) {
      mount(box, problem(e));
    }
  };
  show();
  return box;
}

/** Where the page's content goes. */
export function main() {
  return /** @type {HTMLElement} */ (document.getElementById("main"));
}

/**
 * Offers `data` as a file download (the audit export).
 * @param {string} name
 * @param {unknown} data
 */
export function download(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Copies text, with a confirmation a screen reader hears too. */
export async function copy(/** @type {string} */ text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied");
  } catch {
    toast("Copying was refused by the browser: select the text and copy it.");
  }
}

// <copy-text value="…" label="…">: a value shown in monospace with a Copy button beside it.
class CopyText extends HTMLElement {
  connectedCallback() {
    const value = this.getAttribute("value") || "";
    const label = this.getAttribute("label") || "Copy";
    mount(this, h("code", { class: "copyable" }, value), button(label, () => copy(value), "secondary small", { "aria-label": `${label}: ${value.slice(0, 40)}` }));
  }
}
customElements.define("copy-text", CopyText);

/**
 * @param {string} value
 * @param {string} [label]
 */
export function copyText(value, label = "Copy") {
  return h("copy-text", { value, label });
}

// <tab-set>: tabs with the ARIA tabs pattern (arrow keys move between tabs).
class TabSet extends HTMLElement {
  /**
   * @param {{ id: string, label: string, render: () => Node }[]} tabs
   * @param {string} [selected]
   */
  setTabs(tabs, selected) {
    const list = h("div", { role: "tablist", class: "tabs" });
    const panel = h("div", { role: "tabpanel", class: "tab-panel", tabindex: "0" });
    const buttons = tabs.map((t, i) =>
      h("button", {
        type: "button",
        role: "tab",
        id: `tab-${t.id}`,
        "aria-controls": `panel-${t.id}`,
        onclick: () => choose(i),
        onkeydown: (/** @type {KeyboardEvent} */ e) => {
          const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
          if (step) {
            const next = (i + step + tabs.length) % tabs.length;
            choose(next);
            buttons[next].focus();
          }
        },
      }, t.label),
    );
    const choose = (/** @type {number} */ index) => {
      buttons.forEach((b, j) => {
        b.setAttribute("aria-selected", String(j === index));
        b.tabIndex = j === index ? 0 : -1;
      });
      panel.id = `panel-${tabs[index].id}`;
      panel.setAttribute("aria-labelledby", `tab-${tabs[index].id}`);
      mount(panel, tabs[index].render());
    };
    list.append(...buttons);
    mount(this, list, panel);
    choose(Math.max(0, tabs.findIndex((t) => t.id === selected)));
  }
}
customElements.define("tab-set", TabSet);

/**
 * @param {{ id: string, label: string, render: () => Node }[]} tabs
 * @param {string} [selected]
 */
export function tabs(tabs, selected) {
  const el = /** @type {TabSet} */ (document.createElement("tab-set"));
  el.setTabs(tabs, selected);
  return el;
}
