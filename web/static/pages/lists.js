// IoTa's two device tables; the physical one can map several devices at once.
import { api, session } from "../api.js";
import { formatLocation, formatTime, h, hasLocation } from "../dom.js";
import { attempt, canChange, flash, reload } from "../ui.js";

/** Current mappings as two lookups: physical uid → logical uid and back. */
export async function currentMappings() {
  const rows = await api.get("/mappings/current/?return_uids=true");
  return {
    byPd: new Map(rows.map((m) => [m.pd, m])),
    byLd: new Map(rows.map((m) => [m.ld, m])),
  };
}

/**
 * IoTa's "create mapping" for one physical device: a new logical device with its name and
 * location, mapped from now. A device that is already mapped is left alone (IoTa remapped it).
 */
export async function mapToNewLogical(pd) {
  const ld = await api.post("/logical/devices/", {
    name: pd.name,
    ...(hasLocation(pd.location) ? { location: pd.location } : {}),
  });
  await api.post("/mappings/", { pd: pd.uid, ld: ld.uid });
  return ld;
}

/** A scrolling table: header texts, row elements, the table's id. */
export function table(headers, rows, id) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map((t) => h("th", {}, t)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

export async function physicalListPage() {
  const [devices, mappings] = await Promise.all([api.get("/physical/devices/"), currentMappings()]);
  const editable = canChange(session);
  let lastClicked = -1;
  const boxes = [];
  const rows = devices.map((pd, i) => {
    const mapping = mappings.byPd.get(pd.uid);
    const box = h("input", { type: "checkbox", value: pd.uid, "aria-label": `select ${pd.uid}` });
    // Shift-click selects a range, as IoTa's table did.
    box.addEventListener("click", (event) => {
      if (event.shiftKey && lastClicked >= 0) {
        const [a, b] = [Math.min(lastClicked, i), Math.max(lastClicked, i)];
        for (let k = a; k <= b; k++) {
          boxes[k].checked = box.checked;
        }
      }
      lastClicked = i;
    });
    boxes.push(box);
    return h(
      "tr",
      { "data-uid": pd.uid },
      editable ? h("td", {}, box) : null,
      h("td", {}, pd.uid),
      h("td", {}, h("a", { href: `#/physical-device/${pd.uid}` }, pd.name)),
      h("td", {}, pd.source_name),
      h("td", {}, formatTime(pd.last_seen)),
      h(
        "td",
        {},
        mapping
          ? h(
              "a",
              { href: `#/logical-device/${mapping.ld}` },
              mapping.ld,
              mapping.is_active ? "" : " (paused)",
            )
          : "",
      ),
    );
  });
  const create = h(
    "button",
    {
      type: "button",
      id: "create-mappings",
      onclick: () =>
        attempt(async () => {
          const chosen = devices.filter((_pd, i) => boxes[i].checked);
          if (chosen.length === 0) {
            throw new Error("Select one or more devices first");
          }
          const skipped = chosen.filter((pd) => mappings.byPd.has(pd.uid));
          for (const pd of chosen.filter((pd) => !mappings.byPd.has(pd.uid))) {
            await mapToNewLogical(pd);
          }
          await reload();
          flash(
            `Mapped ${chosen.length - skipped.length} device(s)` +
              (skipped.length
                ? `; ${skipped.map((pd) => pd.uid).join(", ")} already mapped (end the mapping first)`
                : ""),
          );
        }),
    },
    "Create mappings",
  );
  const headers = ["UID", "Name", "Source", "Last seen", "Current mapping"];
  return [
    h("h1", {}, "Physical devices"),
    editable ? h("div", { class: "actions" }, create) : null,
    table(editable ? ["", ...headers] : headers, rows, "physical-devices"),
  ];
}

export async function logicalListPage() {
  const [devices, mappings] = await Promise.all([api.get("/logical/devices/"), currentMappings()]);
  const rows = devices.map((ld) => {
    const mapping = mappings.byLd.get(ld.uid);
    return h(
      "tr",
      { "data-uid": ld.uid },
      h("td", {}, ld.uid),
      h("td", {}, h("a", { href: `#/logical-device/${ld.uid}` }, ld.name)),
      h("td", {}, formatLocation(ld.location)),
      h("td", {}, formatTime(ld.last_seen)),
      h(
        "td",
        {},
        mapping
          ? h(
              "a",
              { href: `#/physical-device/${mapping.pd}` },
              mapping.pd,
              mapping.is_active ? "" : " (paused)",
            )
          : "",
      ),
    );
  });
  return [
    h("h1", {}, "Logical devices"),
    table(["UID", "Name", "Location", "Last seen", "Current mapping"], rows, "logical-devices"),
  ];
}
