// Dead letters: every dead-letter queue with its count and reasons; one queue's letters, by
// reason, each shown in full on a click; replay (to the queue or source it came from) or purge.
import { api, session } from "../api.js";
import { ago, formatTime, h } from "../dom.js";
import { attempt, canChange, flash, reload } from "../ui.js";
import { table } from "./lists.js";

const queueLink = (queue, reason) =>
  `#/dead-letters/${encodeURIComponent(queue)}` +
  (reason ? `?reason=${encodeURIComponent(reason)}` : "");

export async function deadLetterQueuesPage() {
  const queues = await api.get("/dlq");
  const rows = queues.map((q) =>
    h(
      "tr",
      { "data-queue": q.queue },
      h("td", {}, h("a", { href: queueLink(q.queue) }, q.queue)),
      h("td", {}, q.feeds),
      h("td", { class: "messages" }, q.messages),
      h("td", {}, q.oldest ? ago(q.oldest) : ""),
      h(
        "td",
        { class: "wrap" },
        Object.entries(q.reasons).map(([reason, n]) =>
          h("a", { href: queueLink(q.queue, reason), class: "reason" }, `${reason} (${n})`),
        ),
      ),
    ),
  );
  return [
    h("h1", {}, "Dead letters"),
    h(
      "p",
      {},
      "Messages set aside with a reason instead of being processed. Nothing here is lost: " +
        "replay sends them back once the cause is fixed.",
    ),
    table(["Queue", "Collects for", "Messages", "Oldest", "Reasons"], rows, "dead-letter-queues"),
  ];
}

function details(letter) {
  const pairs = [
    ["Reason", letter.reason],
    ["Error", letter.error ?? ""],
    ["Correlation id", letter.correlationId ?? ""],
    ["Message id", letter.messageId ?? ""],
    ["Dead-lettered", formatTime(letter.deadLetteredAt)],
    [
      "Came from",
      letter.origin.kind === "queue"
        ? `queue ${letter.origin.queue}`
        : letter.origin.kind === "source"
          ? `source ${letter.origin.source}`
          : "unknown",
    ],
    ["By", letter.byRabbitmq ? "RabbitMQ (delivery limit)" : (letter.component ?? "")],
    ["Size", `${letter.bodyBytes} bytes`],
  ];
  return h(
    "div",
    { class: "card letter", id: `letter-${letter.position}` },
    h(
      "dl",
      {},
      pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
    h("pre", {}, letter.excerpt),
    letter.correlationId
      ? h("a", { href: `#/trace/${letter.correlationId}` }, "Trace this reading")
      : null,
  );
}

export async function deadLetterQueuePage(queue, params) {
  const reason = params.get("reason") ?? undefined;
  const result = await api.get(
    `/dlq/${encodeURIComponent(queue)}?limit=200` +
      (reason ? `&reason=${encodeURIComponent(reason)}` : ""),
  );
  const editable = canChange(session);
  const detail = h("div", { id: "letter-detail" });
  const boxes = [];
  const rows = result.letters.map((letter) => {
    const box = h("input", {
      type: "checkbox",
      value: letter.correlationId ?? "",
      disabled: !letter.correlationId,
      "aria-label": `select ${letter.position}`,
    });
    boxes.push(box);
    return h(
      "tr",
      { "data-position": letter.position },
      editable ? h("td", {}, box) : null,
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link",
            id: `show-${letter.position}`,
            onclick: () => detail.replaceChildren(details(letter)),
          },
          letter.position,
        ),
      ),
      h("td", {}, letter.reason),
      h("td", {}, formatTime(letter.deadLetteredAt)),
      h("td", {}, letter.correlationId ?? ""),
      h("td", { class: "wrap" }, (letter.error ?? "").slice(0, 120)),
    );
  });
  const replay = async (body, what) => {
    const answer = await api.post(`/dlq/${encodeURIComponent(queue)}/replay`, body);
    await reload();
    flash(
      `Replayed ${answer.replayed} of ${answer.matched} ${what}` +
        (Object.keys(answer.notReplayed).length
          ? `; not replayed: ${JSON.stringify(answer.notReplayed)}`
          : ""),
    );
  };
  const controls = editable
    ? h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            id: "replay-selected",
            onclick: () =>
              attempt(async () => {
                const cids = boxes.filter((b) => b.checked).map((b) => b.value);
                if (cids.length === 0) {
                  throw new Error("Select one or more dead letters first");
                }
                await replay({ cids }, "selected");
              }),
          },
          "Replay selected",
        ),
        reason
          ? h(
              "button",
              {
                type: "button",
                id: "replay-reason",
                onclick: () => {
                  if (confirm(`Replay every ${reason} dead letter of ${queue}?`)) {
                    void attempt(() => replay({ reason }, reason));
                  }
                },
              },
              `Replay all ${reason}`,
            )
          : null,
        reason
          ? h(
              "button",
              {
                type: "button",
                id: "purge-reason",
                class: "danger",
                onclick: () => {
                  if (
                    !confirm(
                      `Delete every ${reason} dead letter of ${queue}? This cannot be undone.`,
                    )
                  ) {
                    return;
                  }
                  void attempt(async () => {
                    const answer = await api.post(`/dlq/${encodeURIComponent(queue)}/purge`, {
                      reason,
                    });
                    await reload();
                    flash(`Purged ${answer.purged} ${reason} dead letter(s)`);
                  });
                },
              },
              `Purge all ${reason}`,
            )
          : null,
      )
    : null;
  const reasons = [...new Set(result.letters.map((l) => l.reason))];
  const filter = h(
    "select",
    {
      id: "reason-filter",
      onchange: (e) => {
        location.hash = queueLink(queue, e.target.value || undefined);
      },
    },
    h("option", { value: "" }, "every reason"),
    [...new Set([...(reason ? [reason] : []), ...reasons])].map((r) =>
      h("option", { value: r, selected: r === reason }, r),
    ),
  );
  return [
    h("h1", {}, `Dead letters: ${queue}`),
    h(
      "p",
      { id: "letters-count" },
      `${result.matched} matching of ${result.messages} in the queue` +
        (result.letters.length < result.matched
          ? `; the first ${result.letters.length} shown`
          : ""),
    ),
    h("div", { class: "map-form" }, h("label", {}, "Reason ", filter)),
    controls,
    table(
      editable
        ? ["", "#", "Reason", "Dead-lettered", "Correlation id", "Error"]
        : ["#", "Reason", "Dead-lettered", "Correlation id", "Error"],
      rows,
      "letters",
    ),
    detail,
    h("p", {}, h("a", { href: "#/dead-letters" }, "All dead-letter queues")),
  ];
}
