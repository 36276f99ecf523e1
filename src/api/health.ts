import { deadline } from "../core/backoff.js";
import type { Db } from "../db/database.js";
import { writerBacklogs, type WriterBacklog } from "../db/repositories/delivery-queue.js";
import { counterRates, parseCounters, RateBase, type ComponentCounters } from "./health-figures.js";

/** A queue the health page shows, and what kind it is. */
export interface WatchedQueue {
  /** Full name (QUEUE_PREFIX included). */
  readonly name: string;
  readonly kind: "consumer" | "dead letters";
}

export interface HealthProbeOptions {
  /**
   * Base URLs of the processes' ops ports (each serves /readyz and /metrics), e.g.
   * `http://127.0.0.1:9464`.
   */
  readonly targets: readonly string[];
  /** Longest wait for one target's answer, ms. */
  readonly timeoutMs: number;
  readonly queues: readonly WatchedQueue[];
  /** Messages in a queue; undefined when it does not exist. Throws when RabbitMQ is down. */
  readonly countQueue: (name: string) => Promise<number | undefined>;
  readonly db: Db;
  /** Seconds on a monotonic clock. Default `performance.now() / 1000`. */
  readonly now?: () => number;
}

export interface TargetHealth {
  readonly url: string;
  readonly reachable: boolean;
  readonly ready: boolean;
  readonly postgres: boolean | null;
  readonly rabbitmq: boolean | null;
  /** Component name → serving, as the process reports it. */
  readonly components: Readonly<Record<string, boolean>>;
  /** Cumulative message counts per component since the process started. */
  readonly totals: Readonly<Record<string, ComponentCounters>>;
  /** Messages per second per component; null until two readings a second apart exist. */
  readonly rates: Readonly<Record<string, ComponentCounters>> | null;
  readonly error: string | null;
}

export interface QueueHealth {
  readonly queue: string;
  readonly kind: WatchedQueue["kind"];
  /** Messages waiting; null when the queue does not exist (its component never ran). */
  readonly messages: number | null;
  /** Change of `messages` per second (positive: growing); null until two readings exist. */
  readonly change_per_second: number | null;
}

export interface HealthReport {
  readonly checked_at: string;
  readonly targets: readonly TargetHealth[];
  /** null when RabbitMQ could not be asked. */
  readonly queues: readonly QueueHealth[] | null;
  readonly rabbitmq_error: string | null;
  readonly writers: readonly {
    readonly writer: string;
    readonly pending: number;
    readonly oldest_pending_age_seconds: number;
    readonly retrying: number;
    readonly last_error: string | null;
    readonly delivered_last_hour: number;
  }[];
}

/** Minimum period rates are measured over, seconds. */
const RATE_PERIOD_SECONDS = 10;

async function fetchText(
  url: string,
  timeoutMs: number,
): Promise<{ status: number; text: string }> {
  const limit = deadline(timeoutMs);
  try {
    const res = await fetch(url, { signal: limit.signal, redirect: "error" });
    return { status: res.status, text: await res.text() };
  } finally {
    limit.done();
  }
}

/**
 * Gathers the health page's figures: each configured process's /readyz and message counters,
 * the depth of every known queue, and each writer's backlog in delivery_queue. Keeps the recent
 * readings it needs for rates (one instance per API process).
 */
export class HealthProbe {
  readonly #o: HealthProbeOptions;
  readonly #counters = new RateBase<Record<string, ComponentCounters>>(RATE_PERIOD_SECONDS);
  readonly #depths = new RateBase<number>(RATE_PERIOD_SECONDS);
  readonly #now: () => number;

  constructor(options: HealthProbeOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now() / 1000);
  }

  async check(): Promise<HealthReport> {
    const [targets, queues, writers] = await Promise.all([
      Promise.all(this.#o.targets.map((url) => this.#target(url))),
      this.#queues(),
      writerBacklogs(this.#o.db),
    ]);
    return {
      checked_at: new Date().toISOString(),
      targets,
      queues: "error" in queues ? null : queues.list,
      rabbitmq_error: "error" in queues ? queues.error : null,
      writers: writers.map((w: WriterBacklog) => ({
        writer: w.writer,
        pending: w.pending,
        oldest_pending_age_seconds: Math.round(w.oldestPendingAgeSeconds),
        retrying: w.retrying,
        last_error: w.lastError,
        delivered_last_hour: w.deliveredLastHour,
      })),
    };
  }

  async #target(url: string): Promise<TargetHealth> {
    const base = url.replace(/\/+$/, "");
    const down = (error: string): TargetHealth => ({
      url,
      reachable: false,
      ready: false,
      postgres: null,
      rabbitmq: null,
      components: {},
      totals: {},
      rates: null,
      error,
    });
    let ready: { status: number; text: string };
    let metrics: { status: number; text: string };
    try {
      [ready, metrics] = await Promise.all([
        fetchText(`${base}/readyz`, this.#o.timeoutMs),
        fetchText(`${base}/metrics`, this.#o.timeoutMs),
      ]);
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return down(e.name === "TimeoutError" ? "no answer in time" : (e.cause?.code ?? e.message));
    }
    let body: { postgres?: unknown; rabbitmq?: unknown; components?: unknown };
    try {
      body = JSON.parse(ready.text) as typeof body;
    } catch {
      return down(`/readyz answered ${ready.status} without JSON`);
    }
    const totals = metrics.status === 200 ? parseCounters(metrics.text) : {};
    const base_ = this.#counters.advance(url, this.#now(), totals);
    const components: Record<string, boolean> = {};
    if (typeof body.components === "object" && body.components !== null) {
      for (const [name, serving] of Object.entries(body.components)) {
        components[name] = serving === true;
      }
    }
    return {
      url,
      reachable: true,
      ready: ready.status === 200,
      postgres: body.postgres === true,
      rabbitmq: body.rabbitmq === true,
      components,
      totals,
      rates: base_ ? counterRates(base_.value, totals, base_.seconds) : null,
      error: null,
    };
  }

  async #queues(): Promise<{ list: QueueHealth[] } | { error: string }> {
    try {
      const counts = await Promise.all(this.#o.queues.map((q) => this.#o.countQueue(q.name)));
      const at = this.#now();
      return {
        list: this.#o.queues.map((q, i) => {
          const messages = counts[i] ?? null;
          const base = messages === null ? undefined : this.#depths.advance(q.name, at, messages);
          return {
            queue: q.name,
            kind: q.kind,
            messages,
            change_per_second:
              base && messages !== null ? (messages - base.value) / base.seconds : null,
          };
        }),
      };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
}
