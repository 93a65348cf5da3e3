// A token's one-time reveal, shared by personal access tokens and virtual-account tokens.

import { h, copyText } from "../ui.js";

/** @param {import('../../types/client').Schemas['TokenCreated']} created */
export function revealed(created) {
  return h(
    "div",
    { class: "success reveal", role: "status" },
    h("strong", null, `Token “${created.name}” created`),
    h("p", null, "Copy it now: it is shown this once and cannot be read again."),
    copyText(created.token, "Copy token"),
  );
}
