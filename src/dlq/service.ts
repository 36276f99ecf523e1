import type {
  SweepDecision,
  SweepOptions,
  SweepProgress,
  SweepResult,
  SweptMessage,
} from "../bus/queue-sweep.js";
import type { AmqpConnection } from "../bus/connection.js";
import { QueueSweeper } from "../bus/queue-sweep.js";
import type { Config } from "../core/config.js";
import { describeLetter, replayHeaders, type DeadLetter } from "./dead-letter.js";
import { knownDeadLetterQueues, type DeadLetterQueue } from "./catalogue.js";
import { ingestReplayers, type IngestReplayDeps } from "./ingest-replay.js";
import { sourceReplayers } from "./source-replay.js";
import { selects, type Selection } from "./selection.js";

/** What the dead-letter tools need from the broker (`QueueSweeper` in src/bus). */
export interface Sweeper {
  count(queue: string): Promise<number | undefined>;
  sweep(options: SweepOptions): Promise<SweepResult>;
}

/** A dead letter handed to a source's ingest path. */
export interface SourceLetter {
  readonly letter: DeadLetter;
  readonly body: Buffer;
  /** Its AMQP headers (`x-broker-mqtt-topic`, `x-broker-poll-context`, …). */
  readonly headers: Readonly<Record<string, unknown>>;
}

/**
 * Runs raw bodies a source could not take through that source's ingest path again. Resolves
 * with one entry per letter: true once its outcome is durable (published and confirmed, or
 * dead-lettered afresh with today's reason); false, or the reason why, when it must stay where
 * it is.
 */
export type SourceReplayer = (letters: readonly SourceLetter[]) => Promise<(boolean | string)[]>;

export type ProgressListener = (progress: SweepProgress & { readonly queue: string }) => void;

export interface QueueSummary {
  readonly queue: string;
  /** The queue (full name) or source its dead letters come from. */
  readonly feeds: string;
  readonly messages: number;
  /** Dead-lettering time of the oldest message, when the messages carry one. */
  readonly oldest: string | undefined;
  /** Seconds since `oldest`. */
  readonly oldestAgeSeconds: number | undefined;
  /** Dead letters per reason. */
  readonly reasons: Readonly<Record<string, number>>;
}

export interface ShowResult {
  readonly queue: string;
  readonly messages: number;
  /** Dead letters that match, in queue order, at most `limit` of them. */
  readonly letters: readonly DeadLetter[];
  /** How many matched in all. */
  readonly matched: number;
}

export interface ReplayResult {
  readonly queue: string;
  readonly messages: number;
  readonly matched: number;
  readonly replayed: number;
  /** Matched but left in the dead-letter queue, with why (reason → count). */
  readonly notReplayed: Readonly<Record<string, number>>;
  /** False when the operation was interrupted before the end of the queue. */
  readonly complete: boolean;
}

export interface PurgeResult {
  readonly queue: string;
  readonly messages: number;
  readonly purged: number;
  readonly complete: boolean;
}

export interface DeadLetterServiceOptions {
  readonly sweeper: Sweeper;
  readonly queues: readonly DeadLetterQueue[];
  /** Source name → its ingest path, for source dead letters. */
  readonly sourceReplayers?: ReadonlyMap<string, SourceReplayer>;
  /** Messages per batch of a sweep. Default 200. */
  readonly batchSize?: number;
}

const KEEP: SweepDecision = { action: "keep" };

/** A look (ls, show) stopped by its caller before the end of the queue. */
export class SweepInterruptedError extends Error {
  override readonly name = "SweepInterruptedError";
}

/**
 * The operator's dead-letter tools. Every operation is one sweep of the queue (see
 * src/bus/queue-sweep.ts): looking leaves every message in place, in order, undelivered;
 * replaying and purging take the chosen ones out and leave the rest as they were.
 */
export class DeadLetterService {
  readonly #o: DeadLetterServiceOptions;

  constructor(options: DeadLetterServiceOptions) {
    this.#o = options;
  }

  get queues(): readonly DeadLetterQueue[] {
    return this.#o.queues;
  }

  #sweep(
    queue: string,
    decide: (batch: readonly SweptMessage[]) => Promise<SweepDecision[]>,
    onProgress: ProgressListener | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SweepResult> {
    return this.#o.sweeper.sweep({
      queue,
      decide,
      batchSize: this.#o.batchSize,
      onProgress: onProgress && ((p) => onProgress({ ...p, queue })),
      signal,
    });
  }

  /** A look that must see the whole queue: an interrupted one is an error, not a short answer. */
  async #look(
    queue: string,
    read: (letter: DeadLetter) => void,
    onProgress: ProgressListener | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SweepResult> {
    const result = await this.#sweep(
      queue,
      async (batch) =>
        batch.map((m) => {
          read(describeLetter(m));
          return KEEP;
        }),
      onProgress,
      signal,
    );
    if (result.seen < result.total && signal?.aborted === true) {
      throw new SweepInterruptedError(
        `interrupted after ${result.seen} of ${result.total} messages of ${queue}; nothing was lost, but the queue now starts with the messages not yet read`,
      );
    }
    return result;
  }

  /** Every dead-letter queue that exists, with its count, oldest age and reasons. */
  async list(onProgress?: ProgressListener, signal?: AbortSignal): Promise<QueueSummary[]> {
    const summaries: QueueSummary[] = [];
    for (const q of this.#o.queues) {
      const count = await this.#o.sweeper.count(q.name);
      if (count === undefined) {
        continue;
      }
      const reasons: Record<string, number> = {};
      let oldest: string | undefined;
      let messages = count;
      if (count > 0) {
        const result = await this.#look(
          q.name,
          (letter) => {
            reasons[letter.reason] = (reasons[letter.reason] ?? 0) + 1;
            const at = letter.deadLetteredAt;
            if (at !== undefined && (oldest === undefined || at < oldest)) {
              oldest = at;
            }
          },
          onProgress,
          signal,
        );
        messages = result.total;
      }
      summaries.push({
        queue: q.name,
        feeds: q.feed.kind === "queue" ? q.feed.queue : `source ${q.feed.source}`,
        messages,
        oldest,
        oldestAgeSeconds:
          oldest === undefined
            ? undefined
            : Math.max(0, Math.round((Date.now() - Date.parse(oldest)) / 1000)),
        reasons,
      });
    }
    return summaries;
  }

  /**
   * The first `limit` dead letters (of `reason`, and with correlation id `correlationId`, when
   * given), in queue order.
   */
  async show(
    queue: DeadLetterQueue,
    options: { limit: number; reason?: string | undefined; correlationId?: string | undefined },
    onProgress?: ProgressListener,
    signal?: AbortSignal,
  ): Promise<ShowResult> {
    const letters: DeadLetter[] = [];
    let matched = 0;
    const result = await this.#look(
      queue.name,
      (letter) => {
        if (
          (options.reason === undefined || letter.reason === options.reason) &&
          (options.correlationId === undefined || letter.correlationId === options.correlationId)
        ) {
          matched++;
          if (letters.length < options.limit) {
            letters.push(letter);
          }
        }
      },
      onProgress,
      signal,
    );
    return { queue: queue.name, messages: result.total, letters, matched };
  }

  /**
   * Sends the selected dead letters back: a queue's to that one queue (through the default
   * exchange, never the fanout exchange every other consumer hears), confirmed before the dead
   * letter is acknowledged; a source's through the source's ingest path.
   */
  async replay(
    queue: DeadLetterQueue,
    selection: Selection,
    onProgress?: ProgressListener,
    signal?: AbortSignal,
  ): Promise<ReplayResult> {
    let matched = 0;
    let replayed = 0;
    const notReplayed: Record<string, number> = {};
    const skip = (why: string): SweepDecision => {
      notReplayed[why] = (notReplayed[why] ?? 0) + 1;
      return KEEP;
    };
    const result = await this.#sweep(
      queue.name,
      async (batch) => {
        const decisions: SweepDecision[] = [];
        const bySource = new Map<string, { index: number; letter: SourceLetter }[]>();
        for (const m of batch) {
          const letter = describeLetter(m);
          if (!selects(selection, letter)) {
            decisions.push(KEEP);
            continue;
          }
          matched++;
          const origin = letter.origin;
          if (origin.kind === "queue") {
            replayed++;
            decisions.push({
              action: "send",
              queue: origin.queue,
              headers: replayHeaders(m.properties.headers),
            });
          } else if (origin.kind === "source") {
            const pending = bySource.get(origin.source) ?? [];
            pending.push({
              index: decisions.length,
              letter: { letter, body: m.body, headers: m.properties.headers },
            });
            bySource.set(origin.source, pending);
            decisions.push(KEEP);
          } else {
            decisions.push(skip("origin_unknown"));
          }
        }
        for (const [source, pending] of bySource) {
          const replayer = this.#o.sourceReplayers?.get(source);
          if (!replayer) {
            pending.forEach(() => skip(`no_ingest_path_for_${source}`));
            continue;
          }
          const done = await replayer(pending.map((p) => p.letter));
          pending.forEach((p, i) => {
            if (done[i] === true) {
              replayed++;
              decisions[p.index] = { action: "drop" };
            } else {
              const why = done[i];
              skip(typeof why === "string" ? why : "ingest_failed");
            }
          });
        }
        return decisions;
      },
      onProgress,
      signal,
    );
    return {
      queue: queue.name,
      messages: result.total,
      matched,
      replayed,
      notReplayed,
      complete: result.seen === result.total,
    };
  }

  /** Removes every dead letter of `reason`; the others stay, in order. */
  async purge(
    queue: DeadLetterQueue,
    reason: string,
    onProgress?: ProgressListener,
    signal?: AbortSignal,
  ): Promise<PurgeResult> {
    const result = await this.#sweep(
      queue.name,
      async (batch) =>
        batch.map((m) => (describeLetter(m).reason === reason ? { action: "drop" } : KEEP)),
      onProgress,
      signal,
    );
    return {
      queue: queue.name,
      messages: result.total,
      purged: result.dropped,
      complete: result.seen === result.total,
    };
  }
}

/**
 * The service over one AMQP connection, for every dead-letter queue behind the configured
 * QUEUE_PREFIX, with the source ingest paths of src/dlq/source-replay.ts.
 */
export function createDeadLetterService(
  connection: AmqpConnection,
  config: Pick<Config, "amqp" | "env" | "production" | "ttnWebhook">,
  ingest?: IngestReplayDeps,
): DeadLetterService {
  const replayers = sourceReplayers(config);
  for (const [source, replayer] of ingest ? ingestReplayers(ingest) : []) {
    replayers.set(source, replayer);
  }
  return new DeadLetterService({
    sweeper: new QueueSweeper(connection),
    queues: knownDeadLetterQueues(config.amqp.queuePrefix),
    sourceReplayers: replayers,
  });
}
