// The registry event log, newest first, filtered by kind, operation, entity id and actor.
import { api, session } from "../api.js";
import { formatTime, h } from "../dom.js";
import { attempt, canChange } from "../ui.js";

const ENTITIES = ["physical_device", "logical_device", "mapping", "note", "user"];
const OPERATIONS = ["create", "update", "delete", "start", "end", "pause", "resume"];
const PAGE = 100;

function select(id, label, values) {
  return h(
    "label",
    {},
    `${label} `,
    h(
      "select",
      { id },
      h("option", { value: "" }, "any"),
      values.map((v) => h("option", { value: v }, v.replace("_", " "))),
    ),
  );
}

/** Where an event's entity is shown, when it has a page. */
function entityLink(e) {
  if (e.entity === "physical_device" || e.entity === "logical_device") {
    return h("a", { href: `#/${e.entity.replace("_", "-")}/${e.entity_id}` }, e.entity_id);
  }
  return e.entity_id;
}

export async function eventsPage(params) {
  const filters = h(
    "form",
    { class: "map-form", id: "event-filters" },
    // User events are for admins only (the API refuses the filter to read-only users).
    select(
      "event-entity",
      "Kind",
      canChange(session) ? ENTITIES : ENTITIES.filter((e) => e !== "user"),
    ),
    select("event-operation", "Operation", OPERATIONS),
    h("label", {}, "Entity id ", h("input", { id: "event-entity-id", size: 10 })),
    h("label", {}, "Actor ", h("input", { id: "event-actor", size: 14, placeholder: "api:admin" })),
    h("button", { type: "submit", id: "event-search" }, "Show"),
  );
  for (const [key, id] of [
    ["entity", "event-entity"],
    ["operation", "event-operation"],
    ["entity_id", "event-entity-id"],
    ["actor", "event-actor"],
  ]) {
    const value = params.get(key);
    if (value) {
      filters.querySelector(`#${id}`).value = value;
    }
  }
  const body = h("tbody");
  const more = h("button", { type: "button", id: "event-older", hidden: true }, "Older events");
  let oldest;

  const query = () => {
    const q = new URLSearchParams({ order: "desc", limit: String(PAGE) });
    for (const [key, id] of [
      ["entity", "event-entity"],
      ["operation", "event-operation"],
      ["entity_id", "event-entity-id"],
      ["actor", "event-actor"],
    ]) {
      const value = filters.querySelector(`#${id}`).value.trim();
      if (value) {
        q.set(key, value);
      }
    }
    return q;
  };
  const load = async (append) => {
    const q = query();
    if (append && oldest !== undefined) {
      q.set("before", String(oldest));
    }
    const events = await api.get(`/events?${q}`);
    const rows = events.flatMap((e) => {
      const data = h(
        "tr",
        { class: "event-data", hidden: true },
        h("td", { colspan: 7 }, h("pre", {}, JSON.stringify(e.data, null, 2))),
      );
      return [
        h(
          "tr",
          { "data-id": e.id, class: "event" },
          h(
            "td",
            {},
            h(
              "button",
              { type: "button", class: "link", onclick: () => (data.hidden = !data.hidden) },
              e.id,
            ),
          ),
          h("td", {}, formatTime(e.occurred_at)),
          h("td", {}, e.entity),
          h("td", {}, e.operation),
          h("td", {}, entityLink(e)),
          h("td", {}, e.actor),
          h("td", { class: "wrap" }, (e.data.changed ?? []).join(", ")),
        ),
        data,
      ];
    });
    if (append) {
      body.append(...rows);
    } else {
      body.replaceChildren(...rows);
    }
    if (events.length > 0) {
      oldest = events[events.length - 1].id;
    }
    more.hidden = events.length < PAGE;
  };
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    oldest = undefined;
    void attempt(() => load(false));
  });
  more.addEventListener("click", () => attempt(() => load(true)));
  await load(false);
  const headers = ["Id", "When", "Kind", "Operation", "Entity", "Actor", "Changed"];
  return [
    h("h1", {}, "Registry events"),
    filters,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "events" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            headers.map((t) => h("th", {}, t)),
          ),
        ),
        body,
      ),
    ),
    h("div", { class: "actions" }, more),
  ];
}
