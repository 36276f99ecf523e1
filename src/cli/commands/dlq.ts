import { createInterface } from "node:readline/promises";

import { InvalidArgumentError, type Command } from "commander";

import { AmqpConnection } from "../../bus/connection.js";
import { loadConfig, type Config } from "../../core/config.js";
import { createLogger, type Logger } from "../../core/logger.js";
import { Metrics } from "../../core/metrics.js";
import { createDatabase } from "../../db/database.js";
import { resolveDeadLetterQueue, type DeadLetterQueue } from "../../dlq/catalogue.js";
import { selectionFrom } from "../../dlq/selection.js";
import {
  createDeadLetterService,
  type DeadLetterService,
  type ProgressListener,
} from "../../dlq/service.js";
import { describeError } from "../errors.js";
import { stderrProgress } from "../progress-output.js";
import { printJson, UsageError } from "../context.js";

/** How long `broker dlq` waits for RabbitMQ before giving up, in ms. */
const CONNECT_WAIT_MS = 5_000;

interface Session {
  readonly config: Config;
  readonly logger: Logger;
  readonly service: DeadLetterService;
  readonly progress: ProgressListener;
  /** Aborts on SIGINT/SIGTERM: the operation stops between batches, nothing lost. */
  readonly signal: AbortSignal;
}

/** Progress on stderr, by queue. */
function progressListener(): ProgressListener {
  const update = stderrProgress();
  return ({ queue, done, total }) => update(queue, done, total);
}

async function withSession<T>(fn: (session: Session) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const logger = createLogger({ level: config.logLevel, destination: process.stderr });
  const connection = new AmqpConnection({
    url: config.amqp.url,
    name: `broker dlq ${process.pid}`,
    // "connected" is not news for a command; warnings (a lost connection) are.
    logger: logger.child(
      { component: "rabbitmq" },
      { level: config.logLevel === "info" ? "warn" : config.logLevel },
    ),
  });
  const database = createDatabase({ ...config.pg, poolSize: 2 }, logger);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  connection.start();
  try {
    await connection.waitUntilConnected(CONNECT_WAIT_MS);
    // Replays of MQTT and poller dead letters run their source's ingest path in this process
    // (src/dlq/ingest-replay.ts); the pool connects only if one does.
    const ingest = {
      config,
      logger,
      metrics: new Metrics({ defaultMetrics: false }),
      database,
      amqp: connection,
      isHealthy: async () => connection.isConnected && (await database.ping()),
    };
    const service = createDeadLetterService(connection, config, ingest);
    return await fn({ config, logger, service, progress: progressListener(), signal: stop.signal });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await connection.close();
    await database.close();
  }
}

function queueNamed(session: Session, given: string): DeadLetterQueue {
  const queue = resolveDeadLetterQueue(
    given,
    session.config.amqp.queuePrefix,
    session.service.queues,
  );
  if (!queue) {
    throw new UsageError(
      `${given} is not a dead-letter queue (see "broker dlq ls"; names end in .dead)`,
    );
  }
  return queue;
}

/** A usage error is reported on one line and exits 2; anything else goes to main's handler. */
function action<A extends unknown[]>(
  fn: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (!(err instanceof UsageError)) {
        throw err;
      }
      process.stderr.write(`error: ${describeError(err)}\n`);
      process.exitCode = 2;
    }
  };
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 10_000) {
    throw new InvalidArgumentError("must be a whole number from 1 to 10000.");
  }
  return Number(value);
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").filter((v) => v !== "")];
}

/** Whether a person can be asked (both a terminal to read from and one to ask on). */
function canAsk(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true;
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^(y|yes)$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

function interrupted(complete: boolean): void {
  if (!complete) {
    process.stderr.write(
      "error: interrupted before the end of the queue; nothing was lost (see doc/operations.md)\n",
    );
    process.exitCode = 1;
  }
}

/** `broker dlq …`: look at, replay and purge dead letters (doc/operations.md). */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command("dlq").description("dead-letter queues: look, replay, purge");

  dlq
    .command("ls")
    .description("every dead-letter queue with its count, oldest age and reasons (JSON)")
    .action(
      action(async () => {
        await withSession(async (s) => printJson(await s.service.list(s.progress, s.signal)));
      }),
    );

  dlq
    .command("show")
    .description("dead letters of one queue, in order: reason, error, correlation id, body excerpt")
    .argument("<queue>", "dead-letter queue (as listed by ls), or the queue or source it serves")
    .option("-n, --limit <n>", "at most this many (1-10000, default 20)", parseCount, 20)
    .option("--reason <reason>", "only dead letters with this reason")
    .action(
      action(async (given: string, opts: { limit: number; reason?: string }) => {
        await withSession(async (s) => {
          const queue = queueNamed(s, given);
          const result = await s.service.show(
            queue,
            { limit: opts.limit, reason: opts.reason },
            s.progress,
            s.signal,
          );
          printJson(result);
        });
      }),
    );

  dlq
    .command("replay")
    .description("send dead letters back to the one queue (or source) they came from")
    .argument("<queue>", "dead-letter queue (as listed by ls)")
    .option(
      "--cid <id...>",
      "only these broker_correlation_ids (repeat or comma-separate)",
      collect,
    )
    .option("--reason <reason>", "only dead letters with this reason")
    .option("--all", "every dead letter in the queue")
    .action(
      action(async (given: string, opts: { cid?: string[]; reason?: string; all?: boolean }) => {
        const selection = selectionFrom({ all: opts.all, cids: opts.cid, reason: opts.reason });
        if (typeof selection === "string") {
          throw new UsageError(selection);
        }
        await withSession(async (s) => {
          const queue = queueNamed(s, given);
          const result = await s.service.replay(queue, selection, s.progress, s.signal);
          printJson(result);
          interrupted(result.complete);
        });
      }),
    );

  dlq
    .command("purge")
    .description("delete the dead letters of one reason (asks first unless --yes)")
    .argument("<queue>", "dead-letter queue (as listed by ls)")
    .requiredOption("--reason <reason>", "the reason whose dead letters go")
    .option("-y, --yes", "do not ask for confirmation")
    .action(
      action(async (given: string, opts: { reason: string; yes?: boolean }) => {
        if (opts.yes !== true && !canAsk()) {
          throw new UsageError(
            "refusing to purge without confirmation: no terminal to ask on; add --yes",
          );
        }
        await withSession(async (s) => {
          const queue = queueNamed(s, given);
          if (
            opts.yes !== true &&
            !(await confirm(
              `delete every dead letter with reason "${opts.reason}" from ${queue.name}?`,
            ))
          ) {
            process.stderr.write("nothing purged\n");
            return;
          }
          const result = await s.service.purge(queue, opts.reason, s.progress, s.signal);
          printJson(result);
          interrupted(result.complete);
        });
      }),
    );
}
