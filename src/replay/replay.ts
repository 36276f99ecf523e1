import { randomUUID } from "node:crypto";

import type { OutgoingMessage } from "../bus/publisher.js";
import type { JsonObject } from "../core/devices.js";
import { PermanentError } from "../core/errors.js";
import {
  messageKey,
  parseMessage,
  RAW_CORRELATION_HEADER,
  REPLAY_HEADER,
  type NormalisedMessage,
} from "../core/message.js";
import { parseInstantMicros } from "../core/time.js";
import type { Db } from "../db/database.js";
import { findPhysicalDeviceUids } from "../db/repositories/physical-devices.js";
import {
  findRowsOfRawMessages,
  forwardedRowsOfReplay,
  replaceRows,
  type StoredRow,
  type TimeseriesRow,
} from "../db/repositories/physical-timeseries.js";
import {
  createRun,
  findUnfinishedRun,
  finishRun,
  measureSelection,
  recordPublished,
  recordStored,
  selectRawBatch,
  tryLockReplay,
  unlockReplay,
  type RawRecord,
  type ReplayRun,
} from "../db/repositories/replay-runs.js";
import { loadRoutes, recordLogicalSightings } from "../db/repositories/routes.js";
import {
  decideRoute,
  LTS_ROUTING_KEY,
  messageWindow,
  newestPerLogicalDevice,
  type DeviceRoute,
  type RouteDecision,
  type RouteOptions,
} from "../mapper/route.js";
import {
  diffRawMessage,
  TotalsAccumulator,
  type DiffMessage,
  type RawDiff,
  type ReplayTotals,
} from "./diff.js";
import type { RawNormaliser, ReplayPublisher } from "./ports.js";
import type { ReplaySelection } from "./selection.js";

/**
 * Replay: re-normalises stored raw messages with today's decoders and normalisers and replaces
 * what their earlier run stored. Per batch of raw messages (one select, one device lookup, one
 * lookup of stored rows, one registry query): each raw message is normalised again and compared
 * with its stored rows (diff.ts); one whose result is unchanged is left alone. The changed ones'
 * rows are replaced in one transaction that also advances the replay's record (replay_runs), the
 * new rows are routed by time as the mapper would, and those forwarded are published to the
 * logical exchange in one confirmed round with the replay's id in {@link REPLAY_HEADER}. The
 * round waits for its confirms while the next batch is stored, and that batch's transaction
 * records it as published (the last one is recorded alone).
 *
 * Interrupted and run again with the same selection, a replay resumes: raw messages up to
 * `stored_through` are not taken again, and the rows of those stored but not yet published are
 * published first (with `x-broker-replay-retry: true`; a message RabbitMQ had already taken comes
 * twice with one message_id, which the writers' msg_key check stores once). One replay runs at a
 * time (a PostgreSQL advisory lock).
 */

/** Header set on messages published again when an interrupted replay resumes. */
export const REPLAY_RETRY_HEADER = "x-broker-replay-retry";

export interface ReplayDeps {
  readonly db: Db;
  readonly normaliser: RawNormaliser;
  /** Not used by a dry run. */
  readonly publisher?: ReplayPublisher;
  /** The mapper's clock rules (FUTURE_TOLERANCE_SECONDS, PAST_TOLERANCE_SECONDS), without `now`. */
  readonly route: Omit<RouteOptions, "now">;
}

export interface ReplayOptions {
  /** Raw messages per batch. Default 500. */
  readonly batchSize?: number;
  /** Compute and report what would change; store and publish nothing. */
  readonly dryRun?: boolean;
  /** Called after each batch: raw messages done so far (a resumed run counts from its start). */
  readonly onProgress?: (done: number, total: number) => void;
  /** Epoch ms regarded as now (routing's clock rules). Default Date.now. */
  readonly now?: () => number;
  /** Stops the replay between two batches (it resumes when run again). */
  readonly signal?: AbortSignal;
}

export interface ReplaySummary {
  /** The replay's id (replay_runs.id and the x-broker-replay header); absent for a dry run. */
  readonly replay_id?: string;
  readonly dry_run: boolean;
  /** A resumed replay: what was done before this run is not in `totals`. */
  readonly resumed: boolean;
  /** Raw messages the replay selected (a resumed one: when it first started). */
  readonly selected: number;
  /** Messages published to the logical exchange by this run (including republished ones). */
  readonly published: number;
  /** Messages stored held (no mapping holds their time, paused, clock rules). */
  readonly held: number;
  /** False when stopped by the signal before the end: run the same command again to resume. */
  readonly complete: boolean;
  readonly totals: ReplayTotals;
}

/** One raw message's replay, before anything is written. */
type Planned =
  | { readonly raw: RawRecord; readonly failed: string }
  | {
      readonly raw: RawRecord;
      readonly messages: readonly NormalisedMessage[];
      /** Rows stored from its earlier run. */
      readonly stored: readonly StoredRow[];
      readonly diff: RawDiff;
    };

async function normaliseBatch(
  db: Db,
  normaliser: RawNormaliser,
  raws: readonly RawRecord[],
): Promise<Planned[]> {
  const results = await Promise.all(
    raws.map(async (raw) =>
      normaliser.supports(raw.sourceName)
        ? normaliser.normalise(raw)
        : ({ ok: false, reason: "replay_unsupported", error: raw.sourceName } as const),
    ),
  );
  // One device lookup per source for the batch.
  const wanted = new Map<string, Map<string, JsonObject>>();
  results.forEach((r, i) => {
    if (!r.ok) {
      return;
    }
    const source = raws[i]!.sourceName;
    const bySource = wanted.get(source) ?? new Map<string, JsonObject>();
    wanted.set(source, bySource);
    for (const d of r.devices) {
      bySource.set(JSON.stringify(d.lookup), d.lookup);
    }
  });
  const uidOf = new Map<string, number>();
  for (const [source, lookups] of wanted) {
    const keys = [...lookups.keys()];
    const found = await findPhysicalDeviceUids(db, source, [...lookups.values()]);
    keys.forEach((k, i) => {
      const uid = found[i];
      if (uid !== undefined) {
        uidOf.set(`${source}\u0000${k}`, uid);
      }
    });
  }
  const built: (
    { raw: RawRecord; failed: string } | { raw: RawRecord; messages: NormalisedMessage[] }
  )[] = results.map((r, i) => {
    const raw = raws[i]!;
    if (!r.ok) {
      return { raw, failed: r.reason };
    }
    const messages: NormalisedMessage[] = [];
    for (const d of r.devices) {
      const uid = uidOf.get(`${raw.sourceName}\u0000${JSON.stringify(d.lookup)}`);
      if (uid === undefined) {
        // A replay does not create devices: the earlier run did, or the device was deleted since.
        return { raw, failed: "device_not_found" };
      }
      try {
        messages.push(...d.messages(uid).map(parseMessage));
      } catch (err) {
        if (err instanceof PermanentError) {
          return { raw, failed: err.reason };
        }
        throw err;
      }
    }
    return { raw, messages };
  });

  // Stored rows: by raw id, and pre-013 rows by the body ids the replay produces again.
  const ok = built.filter(
    (b): b is { raw: RawRecord; messages: NormalisedMessage[] } => "messages" in b,
  );
  const alsoBodyIds = new Map<string, string[]>();
  for (const b of ok) {
    const ids = [...new Set(b.messages.map((m) => m.broker_correlation_id))].filter(
      (id) => id !== b.raw.correlationId,
    );
    if (ids.length > 0) {
      alsoBodyIds.set(b.raw.correlationId, ids);
    }
  }
  const rows = await findRowsOfRawMessages(
    db,
    ok.map((b) => b.raw.correlationId),
    alsoBodyIds,
  );
  const storedOf = new Map<string, StoredRow[]>();
  const seen = new Set<number>();
  for (const row of rows) {
    if (seen.has(row.uid)) {
      continue;
    }
    seen.add(row.uid);
    const list = storedOf.get(row.rawCorrelationId) ?? [];
    list.push(row);
    storedOf.set(row.rawCorrelationId, list);
  }
  return built.map((b) => {
    if ("failed" in b) {
      return b;
    }
    const stored = storedOf.get(b.raw.correlationId) ?? [];
    const diff = diffRawMessage(
      stored.map((s) => s.message as unknown as DiffMessage),
      b.messages as unknown as DiffMessage[],
    );
    return { raw: b.raw, messages: b.messages, stored, diff };
  });
}

function addPlanned(totals: TotalsAccumulator, planned: readonly Planned[]): void {
  for (const p of planned) {
    totals.add("failed" in p ? { failed: p.failed } : p.diff);
  }
}

function outgoing(
  json: string,
  key: string,
  correlationId: string,
  rawId: string,
  replayId: string,
  retry: boolean,
): OutgoingMessage {
  return {
    body: Buffer.from(json, "utf8"),
    messageId: key,
    correlationId,
    routingKey: LTS_ROUTING_KEY,
    headers: {
      [REPLAY_HEADER]: replayId,
      [RAW_CORRELATION_HEADER]: rawId,
      ...(retry ? { [REPLAY_RETRY_HEADER]: true } : {}),
    },
  };
}

/** Batches read and normalised ahead of the one being stored. */
const PLANNED_AHEAD = 2;

interface PlannedBatch {
  /** The last raw uid of the batch. */
  readonly through: number;
  readonly planned: readonly Planned[];
  readonly routes: Routes;
}

async function planBatch(
  db: Db,
  normaliser: RawNormaliser,
  raws: readonly RawRecord[],
): Promise<PlannedBatch> {
  const planned = await normaliseBatch(db, normaliser, raws);
  return {
    through: raws[raws.length - 1]!.uid,
    planned,
    routes: await routesOfChanged(db, planned),
  };
}

type Routes = ReadonlyMap<number, DeviceRoute>;

/**
 * The mappings of the devices whose messages changed, over their messages' window: read while
 * the previous batch is stored, as the mapper reads them before its transaction.
 */
function routesOfChanged(db: Db, planned: readonly Planned[]): Promise<Routes> {
  const messages = planned.flatMap((p) => ("diff" in p && p.diff.changed ? p.messages : []));
  return loadRoutes(db, [...new Set(messages.map((m) => m.p_uid))], messageWindow(messages));
}

/**
 * Replaces and routes one batch, in one transaction that also records `publishedThrough` (what
 * RabbitMQ confirmed of earlier batches); returns the messages to publish, per device in time
 * order as a release publishes, and how many were held.
 */
async function storeBatch(
  deps: ReplayDeps,
  run: ReplayRun,
  planned: readonly Planned[],
  routes: Routes,
  through: number,
  now: number,
  publishedThrough: number,
): Promise<{ messages: OutgoingMessage[]; held: number }> {
  const changed = planned.filter(
    (p): p is Extract<Planned, { diff: RawDiff }> => "diff" in p && p.diff.changed,
  );
  const options = { ...deps.route, now };
  const rows: TimeseriesRow[] = [];
  const deleteUids: number[] = [];
  const forwards: Extract<RouteDecision, { kind: "forward" }>[] = [];
  const out: { pUid: number; micros: number; message: OutgoingMessage }[] = [];
  let held = 0;
  let failed = planned.filter((p) => "failed" in p).length;
  let changedCount = 0;
  for (const p of changed) {
    const decisions = p.messages.map((m) => decideRoute(m, routes.get(m.p_uid), options));
    const rejected = decisions.find((d) => d.kind === "reject");
    if (rejected) {
      // The device vanished between lookup and routing: leave this raw message as it is.
      failed++;
      continue;
    }
    changedCount++;
    deleteUids.push(...p.stored.map((s) => s.uid));
    // One raw message may yield one message twice (a decoder repeating itself): stored once.
    const keys = new Set<string>();
    for (const d of decisions) {
      if (d.kind === "reject") {
        continue;
      }
      const json = JSON.stringify(d.stored);
      const key = messageKey(d.stored);
      if (keys.has(key)) {
        continue;
      }
      keys.add(key);
      rows.push({
        physicalUid: d.stored.p_uid,
        logicalUid: d.kind === "forward" ? d.logicalUid : null,
        ts: d.stored.timestamp,
        json,
        msgKey: key,
        holdReason: d.kind === "hold" ? d.reason : null,
        rawCorrelationId: p.raw.correlationId,
      });
      if (d.kind === "forward") {
        forwards.push(d);
        out.push({
          pUid: d.stored.p_uid,
          micros: parseInstantMicros(d.stored.timestamp) ?? 0,
          message: outgoing(
            json,
            key,
            d.stored.broker_correlation_id,
            p.raw.correlationId,
            run.id,
            false,
          ),
        });
      } else {
        held++;
      }
    }
  }
  await deps.db.transaction().execute(async (trx) => {
    await replaceRows(trx, deleteUids, rows, run.id);
    await recordLogicalSightings(trx, newestPerLogicalDevice(forwards));
    await recordStored(trx, run.id, {
      through,
      done: planned.length,
      changed: changedCount,
      failed,
      publishedThrough,
    });
  });
  // Per device in time order, as a release publishes.
  out.sort((a, b) => a.pUid - b.pUid || a.micros - b.micros);
  return { messages: out.map((o) => o.message), held };
}

/** Publishes again what an interrupted run stored but may not have published. */
async function republishInterrupted(
  deps: ReplayDeps,
  publisher: ReplayPublisher,
  run: ReplayRun,
  selection: ReplaySelection,
  batchSize: number,
): Promise<number> {
  let after = run.publishedThrough;
  let published = 0;
  while (after < run.storedThrough) {
    const raws = await selectRawBatch(deps.db, selection, after, run.storedThrough, batchSize);
    if (raws.length === 0) {
      break;
    }
    const rows = await forwardedRowsOfReplay(
      deps.db,
      run.id,
      raws.map((r) => r.correlationId),
    );
    await publisher.publish(
      rows.map((r) => {
        const body = JSON.parse(r.json) as NormalisedMessage;
        return outgoing(
          r.json,
          r.msgKey,
          body.broker_correlation_id,
          r.rawCorrelationId,
          run.id,
          true,
        );
      }),
    );
    published += rows.length;
    after = raws[raws.length - 1]!.uid;
    await recordPublished(deps.db, run.id, after);
  }
  await recordPublished(deps.db, run.id, run.storedThrough);
  return published;
}

/**
 * Runs a replay of `selection` (canonical, from parseSelection), or with `dryRun` reports what it
 * would change. Throws what PostgreSQL or RabbitMQ throws; run again, it resumes.
 */
export async function replay(
  deps: ReplayDeps,
  selection: ReplaySelection,
  options: ReplayOptions = {},
): Promise<ReplaySummary> {
  const batchSize = options.batchSize ?? 500;
  const now = options.now ?? Date.now;
  const totals = new TotalsAccumulator();
  const { all: _all, ...criteria } = selection;
  if (options.dryRun) {
    const { count, lastUid } = await measureSelection(deps.db, criteria);
    let after = 0;
    while (!options.signal?.aborted) {
      const raws = await selectRawBatch(deps.db, criteria, after, lastUid, batchSize);
      if (raws.length === 0) {
        break;
      }
      addPlanned(totals, await normaliseBatch(deps.db, deps.normaliser, raws));
      after = raws[raws.length - 1]!.uid;
      options.onProgress?.(totals.totals().raw, count);
    }
    return {
      dry_run: true,
      resumed: false,
      selected: count,
      published: 0,
      held: 0,
      complete: options.signal?.aborted !== true,
      totals: totals.totals(),
    };
  }
  const publisher = deps.publisher;
  if (!publisher) {
    throw new Error("a replay that is not a dry run needs a publisher");
  }
  return deps.db.connection().execute(async (conn) => {
    if (!(await tryLockReplay(conn))) {
      throw new PermanentError(
        "replay_running",
        "another replay is running; wait for it to end (one replay at a time)",
      );
    }
    try {
      const connDeps = { ...deps, db: conn };
      const found = await findUnfinishedRun(conn, selection);
      let run: ReplayRun;
      if (found) {
        run = found;
      } else {
        const { count, lastUid } = await measureSelection(conn, criteria);
        run = await createRun(conn, {
          id: randomUUID(),
          selection,
          lastRawUid: lastUid,
          total: count,
        });
      }
      let published = await republishInterrupted(connDeps, publisher, run, criteria, batchSize);
      let held = 0;
      let done = run.done;
      let complete = true;
      // The next batches are read and normalised (decoder threads, the pool's other
      // connections) while this one is stored and published on the lock's connection: raw
      // messages of two batches never share rows, so the overlap changes nothing but the time
      // taken. Their selects run one after another (each starts after the last one's end);
      // their decoding and lookups overlap.
      // Undefined once the selection is exhausted; the first select starts from an empty batch.
      let selected: Promise<RawRecord[] | undefined> = Promise.resolve([]);
      let after = run.storedThrough;
      const ahead: Promise<PlannedBatch | undefined>[] = [];
      const planAhead = (): void => {
        while (ahead.length < PLANNED_AHEAD) {
          selected = selected.then(async (previous) => {
            if (previous === undefined) {
              return undefined;
            }
            const raws = await selectRawBatch(deps.db, criteria, after, run.lastRawUid, batchSize);
            if (raws.length === 0) {
              return undefined;
            }
            after = raws[raws.length - 1]!.uid;
            return raws;
          });
          const planning = selected.then(
            (raws) => raws && planBatch(deps.db, deps.normaliser, raws),
          );
          // Nothing unhandled if a batch fails: each is awaited in turn or dropped.
          planning.catch(() => undefined);
          ahead.push(planning);
        }
      };
      // A batch's publish waits for its confirms while the next batch is stored: one publish
      // at a time, in batch order, so each device's messages still reach the exchange in order.
      // What RabbitMQ confirmed is recorded in the next batch's transaction, not a commit of its
      // own; an interrupted run publishes again from there (republishInterrupted).
      let confirmedThrough = run.storedThrough;
      let publishing: Promise<number> | undefined;
      planAhead();
      try {
        for (;;) {
          const pending = ahead.shift()!;
          planAhead();
          const batch = await pending;
          if (!batch) {
            break;
          }
          if (options.signal?.aborted) {
            complete = false;
            break;
          }
          addPlanned(totals, batch.planned);
          const stored = await storeBatch(
            connDeps,
            run,
            batch.planned,
            batch.routes,
            batch.through,
            now(),
            confirmedThrough,
          );
          if (publishing) {
            confirmedThrough = await publishing;
          }
          const through = batch.through;
          publishing = publisher.publish(stored.messages).then(() => through);
          // Awaited with the next batch or after the loop; a failure is thrown from there.
          publishing.catch(() => undefined);
          published += stored.messages.length;
          held += stored.held;
          done += batch.planned.length;
          options.onProgress?.(done, run.total);
        }
      } finally {
        // Batches planned ahead of an end, a stop or a failure finish before the pool is let go.
        await Promise.allSettled(ahead);
      }
      if (publishing) {
        confirmedThrough = await publishing;
      }
      await recordPublished(conn, run.id, confirmedThrough);
      if (complete) {
        await finishRun(conn, run.id);
      }
      return {
        replay_id: run.id,
        dry_run: false,
        resumed: found !== undefined,
        selected: run.total,
        published,
        held,
        complete,
        totals: totals.totals(),
      };
    } finally {
      await unlockReplay(conn).catch(() => undefined);
    }
  });
}
