// IoTa's Wombat panel: the Wombats, the configuration script pending for each (a retained MQTT
// message the API reads and writes for us), and sending or clearing scripts.
import { api, session } from "../api.js";
import { ago, h } from "../dom.js";
import { attempt, canChange, flash, reload } from "../ui.js";
import { table } from "./lists.js";

const ACTIONS = [
  ["logs", "wombat-logs", "Fetch logs", "Ask for the log file of"],
  ["data", "wombat-data", "Fetch data", "Ask for the data file of"],
  ["ota", "wombat-ota", "FW OTA", "Update the firmware of, and reboot,"],
  ["clear", "wombat-clear", "Clear scripts", "Clear the pending script of"],
];

async function send(action, body, done) {
  await attempt(async () => {
    const answer = await api.post("/wombats/config", { action, ...body });
    await reload();
    flash(`${done}: ${answer.serial_nos.join(", ")}`);
  });
}

export async function wombatsPage() {
  const { mqtt, wombats, other_scripts: others } = await api.get("/wombats");
  const editable = canChange(session);
  const boxes = [];
  const rows = wombats.map((w) => {
    const box = h("input", { type: "checkbox", value: w.uid, "aria-label": `select ${w.uid}` });
    boxes.push(box);
    const pending = w.pending_script
      ? h(
          "td",
          { class: "pending", title: w.pending_script },
          h("pre", { class: "script" }, w.pending_script),
          editable
            ? h(
                "button",
                {
                  type: "button",
                  class: "link",
                  id: `clear-${w.uid}`,
                  onclick: () => send("clear", { uids: [w.uid] }, "Cleared"),
                },
                "clear",
              )
            : null,
        )
      : h("td", { class: "pending" }, mqtt ? "" : "?");
    return h(
      "tr",
      { "data-uid": w.uid },
      editable ? h("td", {}, w.serial_no ? box : "") : null,
      h("td", {}, h("a", { href: `#/physical-device/${w.uid}` }, w.uid)),
      h("td", {}, w.name),
      h("td", { title: w.last_seen ?? "" }, ago(w.last_seen)),
      h("td", {}, w.serial_no ?? "—"),
      h("td", {}, w.ccid ?? ""),
      h("td", {}, w.firmware ?? ""),
      h("td", {}, w.ld ? h("a", { href: `#/logical-device/${w.ld.uid}` }, w.ld.name) : ""),
      pending,
    );
  });
  const chosen = () => wombats.filter((_w, i) => boxes[i].checked).map((w) => w.uid);
  const buttons = ACTIONS.map(([action, id, text, verb]) =>
    h(
      "button",
      {
        type: "button",
        id,
        onclick: () => {
          const uids = chosen();
          if (uids.length === 0) {
            flash("Select one or more Wombats first", "error");
            return;
          }
          if (
            (action === "ota" || action === "clear") &&
            !confirm(`${verb} ${uids.length} Wombat(s)?`)
          ) {
            return;
          }
          void send(action, { uids }, action === "clear" ? "Cleared" : "Script pending for");
        },
      },
      text,
    ),
  );
  const otherRows = Object.entries(others).map(([sn, script]) =>
    h(
      "tr",
      { "data-serial": sn },
      h("td", {}, sn),
      h("td", {}, h("pre", { class: "script" }, script)),
      editable
        ? h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                class: "link",
                onclick: () => send("clear", { serial_nos: [sn] }, "Cleared"),
              },
              "clear",
            ),
          )
        : null,
    ),
  );
  const headers = [
    "Id",
    "Name",
    "Last seen",
    "Serial",
    "CCID",
    "Firmware",
    "Logical device",
    "Pending script",
  ];
  return [
    h("h1", {}, "Wombats"),
    mqtt
      ? null
      : h(
          "p",
          { class: "error", id: "mqtt-down" },
          "The MQTT broker did not answer: pending scripts are unknown.",
        ),
    editable ? h("div", { class: "actions" }, buttons) : null,
    table(editable ? ["", ...headers] : headers, rows, "wombats"),
    // Scripts retained for serial numbers no device has (IoTa showed none of these).
    ...(otherRows.length > 0
      ? [
          h("h2", {}, "Scripts for serial numbers no device has"),
          table(
            editable ? ["Serial", "Script", ""] : ["Serial", "Script"],
            otherRows,
            "other-scripts",
          ),
        ]
      : []),
  ];
}
