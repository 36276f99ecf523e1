import { z } from "zod";

import type { Component, Dependencies } from "../../runtime/component.js";
import { classifyError, PermanentError } from "../../core/errors.js";
import { pollCorrelationId } from "../pollers/ids.js";
import { OutcomeTracker, type PollOutcome } from "../pollers/loop.js";
import { createPoller, type PollContext, type PolledItem } from "../pollers/poller.js";
import { ingestItem, oversized, parseVendorJson } from "../pollers/prepared.js";
import { envValue, pollerSettings, requiredSecret } from "../pollers/settings.js";
import { instantOf, zuluSeconds } from "../pollers/times.js";
import {
  DEFAULT_STATION_ID,
  prepareRecord,
  recordOf,
  weatherRecords,
  windowStart,
  type AxisRecord,
} from "./normalise.js";

const SOURCE = "axistech";

/**
 * The AxisTech poller (`broker run axistech`): once per AXISTECH_POLL_SECONDS (default 1800)
 * it asks for the records since the oldest per-station progress (at most five days back) and
 * publishes each record newer than its station's progress, oldest first. A station's progress
 * moves only when its records are stored and confirmed (IoTa moved it while reading the answer).
 */
export function createAxisTechPoller(deps: Dependencies): Component {
  const token = requiredSecret(
    deps.config,
    "AXISTECH_TOKEN",
    "axistech",
    "the AxisTech data exchange token, sent as ?token=",
  );
  const stationId = envValue(
    deps.config,
    "AXISTECH_STATION_ID",
    z.string().trim().min(1).default(DEFAULT_STATION_ID),
  );
  const settings = pollerSettings(deps.config, "AXISTECH", {
    pollSeconds: 1800,
    apiUrl: "https://data.exchange.axisstream.co",
  });

  /** The answer's records, or undefined when there is nothing to work on. */
  async function fetchRecords(
    ctx: PollContext,
    from: number,
    to: number,
  ): Promise<unknown[] | undefined> {
    const res = await ctx.http.request(
      {
        path: "/",
        query: { token, startDate: zuluSeconds(from), endDate: zuluSeconds(to) },
        what: `AxisTech records ${zuluSeconds(from)}..${zuluSeconds(to)}`,
      },
      ctx.signal,
    );
    if (res.status !== 200) {
      ctx.logger.error(
        { status: res.status, body: res.text.slice(0, 500) },
        "AxisTech refused the request",
      );
      return undefined;
    }
    try {
      if (res.oversized) {
        throw oversized(settings.maxResponseBytes);
      }
      return weatherRecords(parseVendorJson(res.text), stationId);
    } catch (err) {
      if (!(err instanceof PermanentError)) {
        throw err;
      }
      await ctx.reject({ what: "weather", text: res.text, error: err });
      return undefined;
    }
  }

  async function poll(ctx: PollContext): Promise<PollOutcome> {
    const tracker = new OutcomeTracker();
    const progress = await ctx.loadProgress();
    const now = Date.now();
    let values: unknown[] | undefined;
    try {
      values = await fetchRecords(ctx, windowStart(progress, now), now);
    } catch (err) {
      if (classifyError(err).kind !== "transient" || ctx.signal.aborted) {
        throw err;
      }
      ctx.logger.warn({ err }, "AxisTech unavailable");
      tracker.incomplete(err);
      return tracker.outcome;
    }
    const records: AxisRecord[] = [];
    const bad: { value: unknown; error: PermanentError }[] = [];
    const seen = new Set<string>();
    for (const value of values ?? []) {
      let record: AxisRecord;
      try {
        record = recordOf(value);
      } catch (err) {
        bad.push({ value, error: err as PermanentError });
        continue;
      }
      const id = `${record.key}\u0000${record.timestamp}`;
      const last = progress.get(record.key)?.lastTs;
      if (
        seen.has(id) ||
        (last !== undefined && last !== null && instantOf(record.timestamp) <= instantOf(last))
      ) {
        continue;
      }
      seen.add(id);
      records.push(record);
    }
    if (bad.length > 0) {
      await ctx.reject({
        what: "records",
        text: JSON.stringify(bad.map((b) => b.value)),
        error: new PermanentError(bad[0]!.error.reason, bad.map((b) => b.error.message).join("; ")),
      });
    }
    // Oldest first, so each batch's progress only ever moves a station forward past what is stored.
    records.sort((a, b) => instantOf(a.timestamp) - instantOf(b.timestamp));
    const items: PolledItem[] = records.map((record) => {
      const cid = pollCorrelationId(SOURCE, record.key, record.timestamp);
      return {
        item: ingestItem(prepareRecord(record, cid), cid, new Date().toISOString(), {}),
        progress: { deviceKey: record.key, lastTs: record.timestamp },
      };
    });
    await ctx.submit(items);
    return tracker.outcome;
  }

  return createPoller(deps, {
    component: "axistech",
    source: SOURCE,
    deadLetterQueue: "axistech_ingest.dead",
    settings,
    poll,
  });
}
