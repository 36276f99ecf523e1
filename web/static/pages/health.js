// The health page: every process's readiness (the API asks each ops URL in WEB_HEALTH_TARGETS),
// message rates per component, queue depths and dead-letter counts, writer lag. Refreshes
// itself every 10 seconds while it is shown.
import { api } from "../api.js";
import { h } from "../dom.js";
import { attempt } from "../ui.js";
import { table } from "./lists.js";

const REFRESH_MS = 10_000;

const yes = (v) => (v === null ? "?" : v ? "yes" : "NO");
const rate = (v) => (v === undefined ? "" : v.toFixed(v >= 10 ? 0 : 2));

function duration(seconds) {
  if (seconds < 120) {
    return `${seconds} s`;
  }
  if (seconds < 7200) {
    return `${Math.round(seconds / 60)} min`;
  }
  return `${(seconds / 3600).toFixed(1)} h`;
}

function targetRows(targets) {
  return targets.map((t) =>
    h(
      "tr",
      { "data-url": t.url, class: t.ready ? "ok" : "bad" },
      h("td", {}, t.url),
      h("td", { class: "state" }, t.reachable ? (t.ready ? "ready" : "NOT READY") : "unreachable"),
      h("td", {}, yes(t.postgres)),
      h("td", {}, yes(t.rabbitmq)),
      h(
        "td",
        { class: "components" },
        t.error ??
          Object.entries(t.components)
            .map(([name, serving]) => (serving ? name : `${name} (not serving)`))
            .join(", "),
      ),
    ),
  );
}

function rateRows(targets) {
  return targets.flatMap((t) =>
    Object.entries(t.totals).map(([component, total]) => {
      const r = t.rates?.[component];
      return h(
        "tr",
        { "data-component": component },
        h("td", {}, component),
        h("td", {}, t.url),
        h("td", {}, rate(r?.in)),
        h("td", {}, rate(r?.out)),
        h("td", {}, rate(r?.dead_lettered)),
        h("td", {}, `${total.in} / ${total.out} / ${total.dead_lettered}`),
      );
    }),
  );
}

function queueRows(queues) {
  return queues.map((q) =>
    h(
      "tr",
      {
        "data-queue": q.queue,
        class: q.kind === "dead letters" && q.messages > 0 ? "bad" : "",
      },
      h(
        "td",
        {},
        q.kind === "dead letters" && q.messages > 0
          ? h("a", { href: `#/dead-letters/${encodeURIComponent(q.queue)}` }, q.queue)
          : q.queue,
      ),
      h("td", {}, q.kind),
      h("td", { class: "messages" }, q.messages === null ? "not declared" : q.messages),
      h(
        "td",
        {},
        q.change_per_second === null
          ? ""
          : `${q.change_per_second > 0 ? "+" : ""}${rate(q.change_per_second)}`,
      ),
    ),
  );
}

function writerRows(writers) {
  return writers.map((w) =>
    h(
      "tr",
      { "data-writer": w.writer },
      h("td", {}, w.writer),
      h("td", { class: "pending" }, w.pending),
      h("td", { class: "lag" }, w.pending > 0 ? duration(w.oldest_pending_age_seconds) : "—"),
      h("td", {}, w.retrying),
      h("td", {}, w.delivered_last_hour),
      h("td", { class: "wrap" }, w.last_error ?? ""),
    ),
  );
}

export async function healthPage() {
  const body = h("div", { id: "health" });
  const stamp = h("p", { class: "muted", id: "health-checked" });
  const draw = async () => {
    const report = await api.get("/health");
    stamp.textContent = `Checked ${new Date(report.checked_at).toLocaleTimeString()}; rates are per second over at least 10 s.`;
    body.replaceChildren(
      h("h2", {}, "Processes"),
      table(
        ["Ops URL", "State", "PostgreSQL", "RabbitMQ", "Components"],
        targetRows(report.targets),
        "health-targets",
      ),
      h("h2", {}, "Messages per second"),
      rateRows(report.targets).length === 0
        ? h("p", {}, "No process reports message counters (none of them handles messages).")
        : table(
            ["Component", "Process", "In", "Out", "Dead-lettered", "Totals in / out / dead"],
            rateRows(report.targets),
            "health-rates",
          ),
      h("h2", {}, "Queues"),
      report.queues === null
        ? h("p", { class: "error" }, `RabbitMQ could not be asked: ${report.rabbitmq_error}`)
        : table(
            ["Queue", "Kind", "Messages", "Change per second"],
            queueRows(report.queues),
            "health-queues",
          ),
      h("h2", {}, "Writers"),
      report.writers.length === 0
        ? h("p", {}, "No writer has stored anything in delivery_queue.")
        : table(
            [
              "Writer",
              "Pending",
              "Oldest pending",
              "Retrying",
              "Delivered (last hour)",
              "Last error",
            ],
            writerRows(report.writers),
            "health-writers",
          ),
    );
  };
  await draw();
  // Refresh while this page is shown; the router replaces the page's elements when it changes.
  const timer = setInterval(() => {
    if (!body.isConnected) {
      clearInterval(timer);
      return;
    }
    void draw().catch((err) => {
      stamp.textContent = `Refresh failed: ${err.message}`;
    });
  }, REFRESH_MS);
  return [
    h("h1", {}, "Health"),
    h(
      "div",
      { class: "actions" },
      h(
        "button",
        { type: "button", id: "health-refresh", onclick: () => attempt(draw) },
        "Refresh",
      ),
    ),
    stamp,
    body,
  ];
}
