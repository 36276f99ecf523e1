import type { Component, Dependencies } from "../../runtime/component.js";
import { classifyError, PermanentError } from "../../core/errors.js";
import { contentHash, pollCorrelationId } from "../pollers/ids.js";
import { OutcomeTracker, type PollOutcome } from "../pollers/loop.js";
import { createPoller, type PollContext, type PolledItem } from "../pollers/poller.js";
import { ingestItem, oversized, parseVendorJson } from "../pollers/prepared.js";
import { alreadyProcessed } from "../pollers/progress.js";
import { pollerSettings, requiredSecret } from "../pollers/settings.js";
import { groupNumberPoints, prepareGroup, type EagleGroup, type Unusable } from "./normalise.js";

const SOURCE = "ict_eagleio";

/**
 * The ICT EagleIO poller (`broker run eagleio`): `GET /nodes` once per EAGLEIO_POLL_SECONDS
 * (default 300) with the `x-api-key` header, NumberPoints grouped per logger, one message per
 * group whose content changed since the last one processed. Refuses to start without
 * EAGLEIO_API_TOKEN (IoTa's process exited without a word).
 */
export function createEagleIoPoller(deps: Dependencies): Component {
  const token = requiredSecret(
    deps.config,
    "EAGLEIO_API_TOKEN",
    "eagleio",
    "the EagleIO API key, sent as the x-api-key header",
  );
  const settings = pollerSettings(deps.config, "EAGLEIO", {
    pollSeconds: 300,
    apiUrl: "https://api.eagle.io/api/v1",
  });

  async function fetchNodes(
    ctx: PollContext,
  ): Promise<{ groups: EagleGroup[]; unusable: Unusable[] } | undefined> {
    const res = await ctx.http.request(
      { path: "/nodes", headers: { "x-api-key": token }, what: "EagleIO nodes" },
      ctx.signal,
    );
    if (res.status !== 200) {
      ctx.logger.error(
        { status: res.status, body: res.text.slice(0, 500) },
        "EagleIO refused the nodes request",
      );
      return undefined;
    }
    try {
      if (res.oversized) {
        throw oversized(settings.maxResponseBytes);
      }
      return groupNumberPoints(parseVendorJson(res.text));
    } catch (err) {
      if (!(err instanceof PermanentError)) {
        throw err;
      }
      await ctx.reject({ what: "nodes", text: res.text, error: err });
      return undefined;
    }
  }

  async function poll(ctx: PollContext): Promise<PollOutcome> {
    const tracker = new OutcomeTracker();
    let answer;
    try {
      answer = await fetchNodes(ctx);
    } catch (err) {
      if (classifyError(err).kind !== "transient" || ctx.signal.aborted) {
        throw err;
      }
      ctx.logger.warn({ err }, "EagleIO unavailable");
      tracker.incomplete(err);
      return tracker.outcome;
    }
    if (!answer) {
      return tracker.outcome;
    }
    if (answer.unusable.length > 0) {
      await ctx.reject({
        what: "unusable nodes",
        text: JSON.stringify(answer.unusable.map((u) => u.node)),
        error: new PermanentError("invalid_node", answer.unusable.map((u) => u.problem).join("; ")),
      });
    }
    const progress = await ctx.loadProgress();
    const items: PolledItem[] = [];
    for (const group of answer.groups) {
      const hash = contentHash(JSON.stringify(group.nodes));
      const cid = pollCorrelationId(SOURCE, group.key, hash);
      const prepared = prepareGroup(group, cid);
      if (alreadyProcessed(progress.get(group.key), hash, prepared.newest)) {
        continue;
      }
      items.push({
        item: ingestItem(prepared, cid, new Date().toISOString(), { key: group.key }),
        progress: {
          deviceKey: group.key,
          lastHash: hash,
          ...(prepared.newest === undefined ? {} : { lastTs: prepared.newest }),
        },
      });
    }
    await ctx.submit(items);
    return tracker.outcome;
  }

  return createPoller(deps, {
    component: "eagleio",
    source: SOURCE,
    deadLetterQueue: "ict_eagleio_ingest.dead",
    settings,
    poll,
  });
}
