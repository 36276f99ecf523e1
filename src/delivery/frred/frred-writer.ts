import { resolve } from "node:path";

import { QUEUE_NAMES } from "../../bus/topology.js";
import { ConfigError } from "../../core/config.js";
import type { Db } from "../../db/database.js";
import type { WriterComponent, WriterDeps } from "../ports.js";
import { createWriter, type DeliveryResult, type WriterMessage } from "../writer.js";
import { FrredFiles, messageDirectoryName } from "./frred-files.js";

/** How often readiness re-checks the base directory, in ms. */
const DIRECTORY_CHECK_INTERVAL_MS = 5_000;

/** source_name of each existing physical device among `uids`. */
async function loadSourceNames(db: Db, uids: readonly number[]): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  if (uids.length === 0) {
    return found;
  }
  const rows = await db
    .selectFrom("physical_devices")
    .select(["uid", "source_name"])
    .where("uid", "in", [...uids])
    .execute();
  for (const row of rows) {
    found.set(row.uid, row.source_name);
  }
  return found;
}

/**
 * The FRRED (Intersect DataBolt) writer: drops every logical message into its own directory
 * under FRRED_DIR (see frred-files.ts for the layout, atomicity and idempotency). With
 * FRRED_SOURCES set, only messages from physical devices of those sources are written; the
 * others count as delivered without writing. Directory trouble (missing, full, read-only) is
 * transient: messages wait in `delivery_queue` and are written once the directory is usable again.
 */
export function createFrredWriter(deps: WriterDeps): WriterComponent {
  const { config } = deps;
  if (config.frred.dir === undefined) {
    throw new ConfigError(
      "the frred component needs a directory: set FRRED_DIR, or DATABOLT_SHARED_DIR (messages then go to $DATABOLT_SHARED_DIR/raw_data)",
    );
  }
  const logger = deps.logger.child({ component: "frred" });
  const files = new FrredFiles({
    dir: resolve(config.frred.dir),
    concurrency: config.frred.threads,
  });
  const sources = config.frred.sources ? new Set(config.frred.sources) : undefined;
  /** A physical device's source never changes, so found names are kept for the process's life. */
  const sourceNames = new Map<number, string>();

  let directoryProblem: string | undefined = "not checked yet";
  let writeFailing = false;
  let staleRemoved = false;
  let timer: NodeJS.Timeout | undefined;

  async function checkDirectory(): Promise<void> {
    const state = await files.checkDirectory();
    const problem = state.usable ? undefined : state.problem;
    if (problem !== directoryProblem) {
      if (problem !== undefined) {
        logger.error(
          { dir: files.dir, problem },
          "FRRED directory unusable; messages wait until it is back",
        );
      } else {
        logger.info({ dir: files.dir }, "FRRED directory usable");
      }
    }
    directoryProblem = problem;
    if (problem === undefined && !staleRemoved) {
      staleRemoved = true;
      try {
        const removed = await files.removeStaleTemporaries();
        if (removed > 0) {
          logger.info({ dir: files.dir, removed }, "removed stale temporary directories");
        }
      } catch (err) {
        logger.warn({ err, dir: files.dir }, "cannot remove stale temporary directories");
      }
    }
  }

  async function sourcesOf(uids: Iterable<number>): Promise<ReadonlyMap<number, string>> {
    const missing = [...new Set(uids)].filter((uid) => !sourceNames.has(uid));
    if (missing.length > 0) {
      for (const [uid, name] of await loadSourceNames(deps.db, missing)) {
        sourceNames.set(uid, name);
      }
    }
    return sourceNames;
  }

  async function deliver(messages: readonly WriterMessage[]): Promise<DeliveryResult[]> {
    const outcomes: (DeliveryResult | undefined)[] = new Array(messages.length).fill(undefined);
    const toWrite: { index: number; item: WriterMessage }[] = [];
    const known = sources ? await sourcesOf(messages.map((m) => m.message.p_uid)) : undefined;
    messages.forEach((item, index) => {
      const { message } = item;
      if (sources && known) {
        const source = known.get(message.p_uid);
        if (source === undefined) {
          outcomes[index] = {
            status: "dead-letter",
            reason: "unknown_device",
            error: `physical device ${message.p_uid} does not exist`,
          };
          return;
        }
        if (!sources.has(source)) {
          logger.debug(
            { broker_correlation_id: message.broker_correlation_id, p_uid: message.p_uid, source },
            "source not in FRRED_SOURCES; not written",
          );
          outcomes[index] = { status: "delivered" };
          return;
        }
      }
      toWrite.push({ index, item });
    });

    if (toWrite.length > 0) {
      let results;
      try {
        results = await files.write(toWrite.map((w) => w.item));
      } catch (err) {
        // Thrown as TransientError: the writer puts the batch back and retries with backoff.
        writeFailing = true;
        await checkDirectory().catch(() => undefined);
        throw err;
      }
      if (writeFailing || directoryProblem !== undefined) {
        // Writing works again: readiness follows now rather than at the next periodic check.
        logger.info({ dir: files.dir }, "FRRED writes succeed again");
        writeFailing = false;
        await checkDirectory().catch(() => undefined);
      }
      // Checked once per batch, so a batch whose debug lines would be dropped builds no fields
      // (a directory name each) for them.
      const debug = logger.isLevelEnabled("debug");
      toWrite.forEach(({ index, item }, i) => {
        const result = results[i];
        if (result === "exists" || debug) {
          const fields = {
            broker_correlation_id: item.message.broker_correlation_id,
            l_uid: item.message.l_uid,
            directory: messageDirectoryName(item),
          };
          if (result === "exists") {
            logger.info(fields, "message directory already present; counted as delivered");
          } else {
            logger.debug(fields, "message written");
          }
        }
        outcomes[index] = { status: "delivered" };
      });
    }
    return outcomes.map((o) => o ?? { status: "delivered" });
  }

  return createWriter(deps, {
    name: "frred",
    queue: QUEUE_NAMES.frred,
    logger,
    deliver,
    isReady: () => directoryProblem === undefined && !writeFailing,
    async onStart() {
      logger.info(
        { dir: files.dir, sources: sources ? [...sources] : "all" },
        "writing logical messages to the FRRED directory",
      );
      await checkDirectory();
      timer = setInterval(() => {
        checkDirectory().catch((err: unknown) =>
          logger.warn({ err }, "cannot check the FRRED directory"),
        );
      }, DIRECTORY_CHECK_INTERVAL_MS);
      timer.unref();
    },
    async onStop() {
      clearInterval(timer);
      // createWriter has waited for the delivery loops (up to its limit); a write still under
      // way now fails and its messages come back with the lease.
      await files.close();
    },
  });
}
