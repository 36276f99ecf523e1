// A physical or logical device: edit, mapping (create / update / end / pause-resume, history),
// notes (physical), TTN console link (physical), CSV export and chart (logical).
import { api, ApiError, getOrNone, session } from "../api.js";
import { csvFileName, messagesCsv } from "../csv.js";
import { formatLocation, formatTime, h, hasLocation, parseLocation } from "../dom.js";
import { attempt, canChange, flash, reload } from "../ui.js";
import { chartSection } from "./chart.js";
import { fetchMessages } from "../messages.js";

const OTHER = { physical: "logical", logical: "physical" };
const KEY = { physical: "puid", logical: "luid" };
const SIDE = { physical: "pd", logical: "ld" };

function button(id, text, onclick, extra = {}) {
  return h("button", { type: "button", id, onclick, ...extra }, text);
}

function ttnLink(pd) {
  const ids = pd.source_ids ?? {};
  if (
    pd.source_name !== "ttn" ||
    typeof ids.app_id !== "string" ||
    typeof ids.dev_id !== "string"
  ) {
    return null;
  }
  const href = `${session.ttn_console_url}/applications/${encodeURIComponent(ids.app_id)}/devices/${encodeURIComponent(ids.dev_id)}`;
  return h(
    "a",
    { href, id: "ttn-link", target: "_blank", rel: "noopener noreferrer" },
    "TTN console",
  );
}

function deviceForm(kind, device, editable) {
  const name = h("input", { id: "device-name", value: device.name, readonly: !editable });
  const location = h("input", {
    id: "device-location",
    value: formatLocation(device.location),
    placeholder: "lat, long",
    readonly: !editable,
  });
  const save = () =>
    attempt(async () => {
      const parsed = parseLocation(location.value);
      if (parsed === undefined) {
        throw new Error('Location must be "lat, long" in degrees, or empty');
      }
      if (name.value.trim() === "") {
        throw new Error("The name must not be empty");
      }
      await api.patch(`/${kind}/devices/${device.uid}`, {
        name: name.value.trim(),
        location: parsed,
      });
      await reload();
      flash("Saved");
    });
  return h(
    "form",
    { class: "card device-form", onsubmit: (e) => e.preventDefault() },
    h("label", {}, "UID ", h("input", { value: device.uid, readonly: true })),
    h("label", {}, "Name ", name),
    kind === "physical"
      ? h("label", {}, "Source ", h("input", { value: device.source_name, readonly: true }))
      : null,
    h("label", {}, "Location ", location),
    h(
      "label",
      {},
      "Last seen ",
      h("input", { id: "last-seen", value: formatTime(device.last_seen), readonly: true }),
    ),
    kind === "physical" ? ttnLink(device) : null,
    editable ? button("save-device", "Save", save) : null,
  );
}

async function mappingSection(kind, device, editable) {
  const [current, history, others] = await Promise.all([
    getOrNone(`/mappings/${kind}/current/${device.uid}`),
    api.get(`/mappings/${kind}/all/${device.uid}`),
    editable ? api.get(`/${OTHER[kind]}/devices/?include_properties=false`) : [],
  ]);
  const other = OTHER[kind];
  const otherSide = SIDE[other];
  const status = current
    ? h(
        "p",
        { id: "mapping-status" },
        `Mapped to ${other} device `,
        h(
          "a",
          { href: `#/${other}-device/${current[otherSide].uid}` },
          `${current[otherSide].uid} – ${current[otherSide].name}`,
        ),
        ` since ${formatTime(current.start_time)}`,
        current.is_active ? "" : h("strong", { class: "paused" }, " (paused)"),
      )
    : h("p", { id: "mapping-status" }, "Not mapped.");

  const controls = [];
  if (editable) {
    const choice = h(
      "select",
      { id: "map-target" },
      kind === "physical"
        ? h("option", { value: "new" }, "A new logical device with this name")
        : null,
      others.map((d) => h("option", { value: d.uid }, `${d.uid} – ${d.name}`)),
    );
    const start = h("input", { type: "datetime-local", id: "map-start", step: 1 });
    const map = () =>
      attempt(async () => {
        const startTime = start.value ? new Date(start.value).toISOString() : undefined;
        // Update = end this device's mapping, then map it (the API ends the other side's).
        if (current) {
          await api.patch(`/mappings/${kind}/end/${device.uid}`);
        }
        let target = choice.value;
        if (target === "new") {
          const ld = await api.post("/logical/devices/", {
            name: device.name,
            ...(hasLocation(device.location) ? { location: device.location } : {}),
          });
          target = ld.uid;
        }
        if (kind === "logical") {
          // IoTa's update: the chosen physical device leaves its old logical device first.
          await api.patch(`/mappings/physical/end/${Number(target)}`).catch((err) => {
            if (!(err instanceof ApiError && err.status === 404)) {
              throw err;
            }
          });
        }
        const pair =
          kind === "physical"
            ? { pd: device.uid, ld: Number(target) }
            : { pd: Number(target), ld: device.uid };
        await api.post("/mappings/", { ...pair, ...(startTime ? { start_time: startTime } : {}) });
        await reload();
        flash("Mapped");
      });
    controls.push(
      h(
        "div",
        { class: "map-form" },
        h("label", {}, current ? "Map instead to " : "Map to ", choice),
        h("label", {}, "from (empty = now) ", start),
        button("create-mapping", current ? "Update mapping" : "Create mapping", map),
      ),
    );
    if (current) {
      controls.push(
        h(
          "div",
          { class: "actions" },
          button("end-mapping", "End mapping", () => {
            if (!confirm("End this mapping?")) {
              return;
            }
            void attempt(async () => {
              await api.patch(`/mappings/${kind}/end/${device.uid}`);
              await reload();
              flash("Mapping ended");
            });
          }),
          button(
            current.is_active ? "pause-mapping" : "resume-mapping",
            current.is_active ? "Pause" : "Resume",
            () =>
              attempt(async () => {
                await api.patch(
                  `/mappings/toggle-active/?${KEY[kind]}=${device.uid}&is_active=${!current.is_active}`,
                );
                await reload();
                flash(current.is_active ? "Mapping paused" : "Mapping resumed");
              }),
          ),
        ),
      );
    }
  }

  const rows = history.map((m) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/${other}-device/${m[otherSide].uid}` }, m[otherSide].uid)),
      h("td", {}, m[otherSide].name),
      h("td", {}, formatTime(m.start_time)),
      h("td", {}, formatTime(m.end_time)),
      h("td", {}, m.is_active ? "yes" : "paused"),
    ),
  );
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Mapping"),
    status,
    controls,
    h("h3", {}, "History"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "mapping-history" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [`${other} uid`, "Name", "Start", "End", "Active"].map((t) => h("th", {}, t)),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
  );
}

async function notesSection(device, editable) {
  const notes = await api.get(`/physical/devices/notes/${device.uid}`);
  const items = notes.map((n) => {
    const text = h("p", { class: "note-text" }, n.note);
    const item = h("li", { "data-note": n.uid }, text, h("small", {}, formatTime(n.ts)));
    if (editable) {
      item.append(
        button(
          `edit-note-${n.uid}`,
          "Edit",
          () => {
            const area = h("textarea", { rows: 3 }, n.note);
            const save = button(`save-note-${n.uid}`, "Save", () =>
              attempt(async () => {
                await api.patch("/physical/devices/notes/", { uid: n.uid, note: area.value });
                await reload();
                flash("Note saved");
              }),
            );
            text.replaceWith(area, save);
          },
          { class: "link" },
        ),
        button(
          `delete-note-${n.uid}`,
          "Delete",
          () => {
            if (!confirm("Delete this note?")) {
              return;
            }
            void attempt(async () => {
              await api.delete(`/physical/devices/notes/${n.uid}`);
              await reload();
              flash("Note deleted");
            });
          },
          { class: "link" },
        ),
      );
    }
    return item;
  });
  const add = h("textarea", { id: "new-note", rows: 3, placeholder: "A note about this device" });
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Notes"),
    editable
      ? h(
          "div",
          { class: "note-form" },
          add,
          button("add-note", "Add note", () =>
            attempt(async () => {
              if (add.value.trim() === "") {
                throw new Error("Write the note first");
              }
              await api.post(`/physical/devices/notes/${device.uid}`, { note: add.value });
              await reload();
              flash("Note added");
            }),
          ),
        )
      : null,
    h("ul", { id: "notes" }, items),
  );
}

function exportSection(device) {
  const today = new Date();
  const iso = (d) =>
    `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  const from = h("input", {
    type: "date",
    id: "export-from",
    value: iso(new Date(today.getTime() - 7 * 86400000)),
  });
  const to = h("input", { type: "date", id: "export-to", value: iso(today) });
  const run = () =>
    attempt(async () => {
      if (!from.value || !to.value) {
        throw new Error("Choose both dates");
      }
      // Dates are local midnights in the browser's zone; the end date is included whole.
      const start = new Date(`${from.value}T00:00:00`);
      const end = new Date(`${to.value}T00:00:00`);
      end.setDate(end.getDate() + 1);
      const messages = await fetchMessages(device.uid, start.toISOString(), end.toISOString());
      if (messages.length === 0) {
        flash("No messages found in selected date range.", "error");
        return;
      }
      const blob = new Blob([messagesCsv(messages)], { type: "text/csv" });
      const link = h("a", { href: URL.createObjectURL(blob), download: csvFileName(device.name) });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      flash(`Exported ${messages.length} message(s)`);
    });
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Export data (CSV)"),
    h(
      "div",
      { class: "map-form" },
      h("label", {}, "From ", from),
      h("label", {}, "To ", to),
      button("export-csv", "Export", run),
    ),
  );
}

function propertiesSection(device) {
  const sorted = Object.fromEntries(
    Object.entries(device.properties ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Properties"),
    h("pre", { id: "properties" }, JSON.stringify(sorted, null, 4)),
  );
}

export async function physicalDevicePage(uid) {
  const editable = canChange(session);
  const device = await api.get(`/physical/devices/${uid}`);
  return [
    h("h1", {}, `Physical device ${device.uid} – ${device.name}`),
    deviceForm("physical", device, editable),
    await mappingSection("physical", device, editable),
    await notesSection(device, editable),
    propertiesSection(device),
  ];
}

export async function logicalDevicePage(uid) {
  const editable = canChange(session);
  const device = await api.get(`/logical/devices/${uid}`);
  return [
    h("h1", {}, `Logical device ${device.uid} – ${device.name}`),
    editable
      ? h(
          "p",
          {},
          h("a", { href: `#/replace/${device.uid}`, id: "replace-link" }, "Replace its sensor…"),
        )
      : null,
    deviceForm("logical", device, editable),
    await mappingSection("logical", device, editable),
    exportSection(device),
    chartSection(device),
    propertiesSection(device),
  ];
}
