// Trace a reading: from a correlation id to the raw message as it arrived, the normalised
// messages made from it, the logical devices they reached (or why they are held), what each
// writer did, and dead letters carrying the id.
import { api } from "../api.js";
import { formatTime, h } from "../dom.js";
import { table } from "./lists.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function searchForm(cid) {
  const input = h("input", {
    id: "trace-cid",
    value: cid ?? "",
    placeholder: "correlation id (a UUID)",
    size: 38,
  });
  return h(
    "form",
    {
      class: "map-form",
      onsubmit: (e) => {
        e.preventDefault();
        location.hash = `#/trace/${input.value.trim().toLowerCase()}`;
      },
    },
    h("label", {}, "Correlation id ", input),
    h("button", { type: "submit", id: "trace-go" }, "Trace"),
  );
}

const pretty = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));

function rawSection(raw) {
  return h(
    "section",
    { class: "card", id: "trace-raw" },
    h("h2", {}, "1. As it arrived"),
    raw
      ? [
          h(
            "p",
            {},
            `Source ${raw.source_name}, stored ${formatTime(raw.ts)}`,
            raw.physical_uid !== null
              ? [
                  ", physical device ",
                  h("a", { href: `#/physical-device/${raw.physical_uid}` }, raw.physical_uid),
                ]
              : "",
          ),
          h("pre", {}, pretty(raw.body)),
        ]
      : h(
          "p",
          {},
          "No raw message with this id (the source stores none, or it was never received).",
        ),
  );
}

function messagesSection(messages) {
  const rows = messages.map((m) =>
    h(
      "tr",
      { "data-uid": m.uid },
      h(
        "td",
        {},
        h("a", { href: `#/physical-device/${m.p_uid}` }, `${m.p_uid} ${m.pd_name ?? ""}`),
      ),
      h(
        "td",
        { class: "reached" },
        m.l_uid !== null
          ? h("a", { href: `#/logical-device/${m.l_uid}` }, `${m.l_uid} ${m.ld_name ?? ""}`)
          : h("strong", { class: "paused" }, `held: ${m.hold_reason ?? "unrecorded"}`),
        m.released_at ? ` (released ${formatTime(m.released_at)})` : "",
      ),
      h("td", {}, formatTime(m.ts)),
      h("td", {}, formatTime(m.received_at)),
      h("td", { class: "wrap" }, h("pre", {}, JSON.stringify(m.message.timeseries ?? m.message))),
    ),
  );
  return h(
    "section",
    { class: "card", id: "trace-messages" },
    h("h2", {}, "2. Normalised messages and the logical device each reached"),
    rows.length
      ? table(
          ["Physical device", "Logical device", "Timestamp", "Stored", "Values"],
          rows,
          "trace-messages-table",
        )
      : h("p", {}, "None stored."),
  );
}

function deliveriesSection(deliveries) {
  const rows = deliveries.map((d) =>
    h(
      "tr",
      { "data-writer": d.writer },
      h("td", {}, d.writer),
      h("td", {}, h("a", { href: `#/logical-device/${d.l_uid}` }, d.l_uid)),
      h("td", { class: "state" }, d.state),
      h("td", {}, d.attempts),
      h("td", {}, formatTime(d.delivered_at ?? d.next_attempt_at)),
      h("td", { class: "wrap" }, d.last_error ?? ""),
    ),
  );
  return h(
    "section",
    { class: "card", id: "trace-deliveries" },
    h("h2", {}, "3. What each destination did"),
    rows.length
      ? table(
          ["Writer", "Logical device", "State", "Attempts", "Delivered / next try", "Last error"],
          rows,
          "trace-deliveries-table",
        )
      : h(
          "p",
          {},
          "No writer has a record (FRRED keeps none; others forget delivered messages after a while).",
        ),
  );
}

function deadLettersSection(letters, unchecked) {
  const rows = letters.map((l) =>
    h(
      "tr",
      { "data-queue": l.queue },
      h("td", {}, h("a", { href: `#/dead-letters/${encodeURIComponent(l.queue)}` }, l.queue)),
      h("td", {}, l.reason),
      h("td", {}, formatTime(l.dead_lettered_at)),
      h("td", { class: "wrap" }, l.error ?? ""),
    ),
  );
  return h(
    "section",
    { class: "card", id: "trace-dead-letters" },
    h("h2", {}, "4. Dead letters"),
    rows.length
      ? table(["Queue", "Reason", "Dead-lettered", "Error"], rows, "trace-dead-letters-table")
      : h("p", {}, "None."),
    unchecked.length
      ? h("p", { class: "error" }, `Not searched (busy or unreachable): ${unchecked.join(", ")}`)
      : null,
  );
}

export async function tracePage(cid) {
  const heading = h("h1", {}, "Trace a reading");
  if (!cid) {
    return [
      heading,
      searchForm(),
      h("p", {}, "Or click a point in a logical device's chart, or a dead letter's trace link."),
    ];
  }
  if (!UUID.test(cid)) {
    return [heading, searchForm(cid), h("p", { class: "error" }, "A correlation id is a UUID.")];
  }
  const t = await api.get(`/trace/${cid}`);
  return [
    heading,
    searchForm(cid),
    rawSection(t.raw),
    messagesSection(t.messages),
    deliveriesSection(t.deliveries),
    deadLettersSection(t.dead_letters, t.dead_letters_unchecked),
  ];
}
