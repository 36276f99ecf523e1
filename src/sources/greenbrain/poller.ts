import type { Component, Dependencies } from "../../runtime/component.js";
import { ConfigError, type Config } from "../../core/config.js";
import { classifyError, PermanentError } from "../../core/errors.js";
import { contentHash, pollCorrelationId } from "../pollers/ids.js";
import { OutcomeTracker, type PollOutcome } from "../pollers/loop.js";
import { createPoller, type PollContext, type PolledItem } from "../pollers/poller.js";
import { failed, ingestItem, oversized, parseVendorJson } from "../pollers/prepared.js";
import { alreadyProcessed, type Progress } from "../pollers/progress.js";
import { pollerSettings } from "../pollers/settings.js";
import { GreenBrainSession, type GreenBrainAccount } from "./client.js";
import { prepareLatest, sensorGroupsOf, type SensorGroupRef } from "./normalise.js";

const SOURCE = "greenbrain";
/** Sensor groups in a row whose requests fail before the rest of the account waits for a retry. */
const GIVE_UP_AFTER = 3;
/** Fetched responses stored together (one pipeline batch, one progress write). */
const STORE_EVERY = 50;

function commaList(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** GREENBRAIN_USERS and GREENBRAIN_PASSWORDS, zipped; mismatched lists are a config error. */
export function greenBrainAccounts(config: Pick<Config, "env">): GreenBrainAccount[] {
  const users = commaList(config.env.value("GREENBRAIN_USERS"));
  const passwords = (config.env.value("GREENBRAIN_PASSWORDS") ?? "")
    .split(",")
    .map((s) => s.trim());
  if (users.length === 0) {
    throw new ConfigError(
      "the greenbrain component needs GREENBRAIN_USERS (comma-separated GreenBrain user names) and GREENBRAIN_PASSWORDS; GREENBRAIN_USERS is not set",
    );
  }
  if (passwords.length !== users.length || passwords.some((p) => p === "")) {
    // IoTa zipped the lists and silently ignored the accounts without a password.
    throw new ConfigError(
      `GREENBRAIN_PASSWORDS must hold one password per user in GREENBRAIN_USERS (${users.length} users, ${passwords.filter((p) => p !== "").length} passwords)`,
    );
  }
  return users.map((username, i) => ({ username, password: passwords[i]! }));
}

/**
 * The GreenBrain poller (`broker run greenbrain`): for every account, the sensor groups of its
 * bootstrap, each one's latest readings once per GREENBRAIN_POLL_SECONDS (default 3600). A
 * response identical to the last one processed for its group (BLAKE2b hash, as IoTa) is skipped.
 */
export function createGreenBrainPoller(deps: Dependencies): Component {
  const accounts = greenBrainAccounts(deps.config);
  const settings = pollerSettings(deps.config, "GREENBRAIN", {
    pollSeconds: 3600,
    apiUrl: "https://api.greenbrain.net.au/v3",
  });
  /** Last good bootstrap per account: used when the vendor cannot give a fresh one. */
  const bootstraps = new Map<string, SensorGroupRef[]>();
  let sessions: GreenBrainSession[] | undefined;

  async function sensorGroups(
    ctx: PollContext,
    session: GreenBrainSession,
    tracker: OutcomeTracker,
  ): Promise<SensorGroupRef[]> {
    const cached = bootstraps.get(session.username) ?? [];
    try {
      const res = await session.get(
        "/bootstrap",
        `GreenBrain bootstrap of ${session.username}`,
        ctx.signal,
      );
      if (res.status !== 200) {
        ctx.logger.warn(
          { account: session.username, status: res.status },
          "no GreenBrain bootstrap",
        );
        tracker.incomplete();
        return cached;
      }
      try {
        if (res.oversized) {
          throw oversized(settings.maxResponseBytes);
        }
        const groups = sensorGroupsOf(parseVendorJson(res.text));
        bootstraps.set(session.username, groups);
        return groups;
      } catch (err) {
        if (!(err instanceof PermanentError)) {
          throw err;
        }
        await ctx.reject({ what: `bootstrap ${session.username}`, text: res.text, error: err });
        return cached;
      }
    } catch (err) {
      if (classifyError(err).kind !== "transient" || ctx.signal.aborted) {
        throw err;
      }
      ctx.logger.warn({ err, account: session.username }, "GreenBrain bootstrap unavailable");
      tracker.incomplete(err);
      return cached;
    }
  }

  function polled(
    text: string,
    isOversized: boolean,
    group: SensorGroupRef,
    progress: Progress | undefined,
  ): PolledItem | undefined {
    const hash = contentHash(text);
    const cid = pollCorrelationId(SOURCE, String(group.id), hash);
    const prepared = isOversized
      ? failed(text, oversized(settings.maxResponseBytes))
      : prepareLatest(text, group, cid);
    if (alreadyProcessed(progress, hash, prepared.newest)) {
      return undefined;
    }
    return {
      item: ingestItem(
        prepared,
        cid,
        new Date().toISOString(),
        isOversized ? undefined : { group },
      ),
      progress: {
        deviceKey: String(group.id),
        lastHash: hash,
        ...(prepared.newest === undefined ? {} : { lastTs: prepared.newest }),
      },
    };
  }

  async function pollAccount(
    ctx: PollContext,
    session: GreenBrainSession,
    progress: Map<string, Progress>,
    done: Set<number>,
    tracker: OutcomeTracker,
  ): Promise<void> {
    const groups = await sensorGroups(ctx, session, tracker);
    const pending: PolledItem[] = [];
    let failuresInARow = 0;
    for (const group of groups) {
      if (ctx.signal.aborted || failuresInARow >= GIVE_UP_AFTER) {
        break;
      }
      if (done.has(group.id)) {
        continue;
      }
      let res;
      try {
        res = await session.get(
          `/sensor-groups/${group.id}/latest`,
          `GreenBrain sensor group ${group.id}`,
          ctx.signal,
        );
      } catch (err) {
        if (classifyError(err).kind !== "transient") {
          throw err;
        }
        failuresInARow++;
        tracker.incomplete(err);
        if (!ctx.signal.aborted) {
          ctx.logger.warn({ err, sensorGroup: group.id }, "GreenBrain sensor group not polled");
        }
        continue;
      }
      failuresInARow = 0;
      done.add(group.id);
      if (res.status !== 200) {
        // IoTa's rule: logged and skipped (a group removed from the account, say) until next poll.
        ctx.logger.warn(
          { sensorGroup: group.id, status: res.status },
          "GreenBrain refused a request",
        );
        continue;
      }
      const item = polled(res.text, res.oversized, group, progress.get(String(group.id)));
      if (item) {
        pending.push(item);
      }
      if (pending.length >= STORE_EVERY) {
        await ctx.submit(pending.splice(0));
      }
    }
    // What was fetched is stored even when a stop interrupted the loop.
    await ctx.submit(pending);
  }

  async function poll(ctx: PollContext): Promise<PollOutcome> {
    sessions ??= accounts.map((a) => new GreenBrainSession(ctx.http, a));
    const tracker = new OutcomeTracker();
    const progress = await ctx.loadProgress();
    const done = new Set<number>();
    for (const session of sessions) {
      if (ctx.signal.aborted) {
        break;
      }
      try {
        await pollAccount(ctx, session, progress, done, tracker);
      } catch (err) {
        if (!(err instanceof PermanentError) || err.reason !== "login_refused") {
          throw err;
        }
        ctx.logger.error(
          { account: session.username, error: err.message },
          "GreenBrain login refused",
        );
      }
    }
    return tracker.outcome;
  }

  return createPoller(deps, {
    component: "greenbrain",
    source: SOURCE,
    deadLetterQueue: "greenbrain_ingest.dead",
    settings,
    poll,
  });
}
