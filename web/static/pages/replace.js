// "Replace a sensor": the logical device keeps its history and continues with a new physical
// device from a chosen time. The new mapping ends the old device's where it starts (the API
// does this in one transaction) and the new device's held messages from then on are released.
import { api, getOrNone, session } from "../api.js";
import { formatTime, h } from "../dom.js";
import { attempt, canChange, flash } from "../ui.js";

/** What POST /mappings/release/ sends by default; the others stay held until named. */
const RELEASED_REASONS = ["no_mapping", "paused", "unrecorded"];

function sumOf(reasons, wanted) {
  return Object.entries(reasons)
    .filter(([r]) => wanted(r))
    .reduce((n, [, count]) => n + count, 0);
}

export async function replacePage(ldUid) {
  const heading = h("h1", {}, "Replace a sensor");
  if (!canChange(session)) {
    return [heading, h("p", { class: "error" }, "Read-only users cannot change mappings.")];
  }
  const [lds, free, current] = await Promise.all([
    api.get("/logical/devices/?include_properties=false"),
    api.get("/physical/devices/unmapped/?include_properties=false"),
    api.get("/mappings/current/?return_uids=true"),
  ]);
  const byLd = new Map(current.map((m) => [m.ld, m]));
  const ld = h(
    "select",
    { id: "replace-ld" },
    lds.map((d) =>
      h(
        "option",
        { value: d.uid, selected: d.uid === ldUid },
        `${d.uid} – ${d.name}` + (byLd.has(d.uid) ? ` (now physical ${byLd.get(d.uid).pd})` : ""),
      ),
    ),
  );
  const pd = h(
    "select",
    { id: "replace-pd" },
    free.map((d) => h("option", { value: d.uid }, `${d.uid} – ${d.name} (${d.source_name})`)),
  );
  const from = h("input", { type: "datetime-local", id: "replace-from", step: 1 });
  const confirmBox = h("div", { id: "replace-summary" });

  const review = () =>
    attempt(async () => {
      if (!pd.value) {
        throw new Error("No unmapped physical device to take over: end its old mapping first");
      }
      const start = from.value ? new Date(from.value) : new Date();
      if (Number.isNaN(start.getTime())) {
        throw new Error("The start time is not a date and time");
      }
      const startIso = start.toISOString();
      // What the summary shows is what Replace does, whatever is chosen after it.
      const chosen = { pd: Number(pd.value), ld: Number(ld.value) };
      const [old, held] = await Promise.all([
        getOrNone(`/mappings/logical/current/${ld.value}`),
        api.get(`/mappings/held/?puid=${pd.value}&from=${encodeURIComponent(startIso)}`),
      ]);
      const reasons = held[0]?.reasons ?? {};
      const released = sumOf(reasons, (r) => RELEASED_REASONS.includes(r));
      const kept = sumOf(reasons, (r) => !RELEASED_REASONS.includes(r));
      const newName = pd.selectedOptions[0].textContent;
      const go = h(
        "button",
        {
          type: "button",
          id: "replace-confirm",
          onclick: () =>
            attempt(async () => {
              const answer = await api.post("/mappings/?release=true", {
                ...chosen,
                start_time: startIso,
              });
              const sent = answer?.release?.released ?? 0;
              confirmBox.replaceChildren(
                h(
                  "p",
                  { id: "replace-done" },
                  "Done. ",
                  h("a", { href: `#/logical-device/${chosen.ld}` }, "Open the logical device"),
                ),
              );
              flash(`Sensor replaced; ${sent} held message(s) released`);
            }),
        },
        "Replace",
      );
      confirmBox.replaceChildren(
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Check and confirm"),
          h(
            "ul",
            {},
            h(
              "li",
              {},
              old
                ? `The mapping of physical device ${old.pd.uid} – ${old.pd.name} ends at ${formatTime(startIso)}.`
                : "The logical device has no current mapping.",
            ),
            h("li", {}, `Physical device ${newName} is mapped to it from ${formatTime(startIso)}.`),
            h(
              "li",
              { id: "replace-held" },
              h("strong", { id: "replace-held-count" }, String(released)),
              ` held message(s) of the new device stamped from then on will be released.`,
              kept ? ` ${kept} more held for their timestamp stay held.` : "",
            ),
          ),
          h("div", { class: "actions" }, go),
        ),
      );
    });

  // A changed choice needs a new look before anything is done.
  for (const input of [ld, pd, from]) {
    input.addEventListener("change", () => confirmBox.replaceChildren());
  }
  return [
    heading,
    h(
      "p",
      {},
      "The logical device keeps its history and continues with the new physical device. " +
        "Only physical devices with no current mapping can take over.",
    ),
    h(
      "form",
      { class: "card device-form", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "Logical device ", ld),
      h("label", {}, "New physical device ", pd),
      h("label", {}, "From (your time; empty = now) ", from),
      h("button", { type: "button", id: "replace-next", onclick: review }, "Next"),
    ),
    confirmBox,
  ];
}
