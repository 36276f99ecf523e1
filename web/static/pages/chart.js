// A chart per numeric variable of a logical device over a chosen period (uPlot, from npm).
import { fetchMessages } from "../messages.js";
import { h } from "../dom.js";
import { attempt, flash } from "../ui.js";

const PERIODS = [
  ["1", "Last 24 hours"],
  ["7", "Last 7 days"],
  ["30", "Last 30 days"],
  ["365", "Last year"],
];

/** Columns for uPlot: [times in seconds, one array per numeric variable], by time. */
export function seriesOf(messages) {
  const names = [];
  const rows = [];
  for (const m of messages) {
    const values = {};
    for (const point of Array.isArray(m.timeseries) ? m.timeseries : []) {
      if (point && typeof point.name === "string" && typeof point.value === "number") {
        if (!names.includes(point.name)) {
          names.push(point.name);
        }
        values[point.name] = point.value;
      }
    }
    rows.push([Date.parse(m.timestamp) / 1000, values, m.broker_correlation_id]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  return {
    names,
    times: rows.map((r) => r[0]),
    /** The correlation id of each point's message, for tracing a clicked point. */
    cids: rows.map((r) => r[2]),
    columns: names.map((n) => rows.map((r) => r[1][n] ?? null)),
  };
}

export function chartSection(device) {
  const period = h(
    "select",
    { id: "chart-period" },
    PERIODS.map(([v, t]) => h("option", { value: v }, t)),
  );
  const area = h("div", { id: "charts" });
  const draw = () =>
    attempt(async () => {
      const end = new Date();
      const start = new Date(end.getTime() - Number(period.value) * 86400000);
      const messages = await fetchMessages(device.uid, start.toISOString(), end.toISOString());
      const { names, times, columns, cids } = seriesOf(messages);
      area.replaceChildren();
      if (names.length === 0) {
        flash("No numeric values in this period.", "error");
        return;
      }
      const width = Math.max(280, area.clientWidth || 600);
      names.forEach((name, i) => {
        const box = h("div", { class: "chart", "data-variable": name });
        area.append(box);
        const plot = new window.uPlot(
          {
            title: name,
            width,
            height: 200,
            series: [{}, { label: name, stroke: "#1565c0", spanGaps: true }],
            scales: { x: { time: true } },
          },
          [times, columns[i]],
          box,
        );
        // A click traces the reading under the cursor (uPlot puts the cursor on the nearest point).
        plot.over.addEventListener("click", () => {
          const at = plot.cursor.idx;
          if (at !== null && at !== undefined && cids[at]) {
            location.hash = `#/trace/${cids[at]}`;
          }
        });
      });
    });
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Chart"),
    h(
      "div",
      { class: "map-form" },
      h("label", {}, "Period ", period),
      h("button", { type: "button", id: "draw-chart", onclick: draw }, "Draw"),
    ),
    h("p", { class: "muted" }, "Click a point to trace the reading it came from."),
    area,
  );
}
