import { z } from "zod";

import { QueueBusyError, QueueNotFoundError } from "../../bus/queue-sweep.js";
import { classifyError } from "../../core/errors.js";
import { resolveDeadLetterQueue, type DeadLetterQueue } from "../../dlq/catalogue.js";
import type { DeadLetterService } from "../../dlq/service.js";
import { ApiError, notFound } from "../errors.js";
import { ok, route, type Route } from "../route.js";
import { failure, json } from "../schemas/common.js";
import { intParam, textParam } from "../schemas/params.js";

/**
 * Dead-letter queues (extension, doc/operations.md): look for any authenticated user; replay
 * and purge for admins. Each call is one sweep of the queue, so looking disturbs nothing, and
 * two operations on one queue never interleave (the second is answered 409).
 */

const tags = ["dead letters"];

const reasons = z.record(z.string(), z.number().int()).meta({ description: "Count per reason." });

const summaryOutput = z
  .object({
    queue: z.string(),
    feeds: z.string().meta({ description: "The queue, or `source <name>`, it collects for." }),
    messages: z.number().int(),
    oldest: z.string().optional().meta({ format: "date-time" }),
    oldestAgeSeconds: z.number().int().optional(),
    reasons,
  })
  .meta({ id: "DeadLetterQueue" });

const letterOutput = z
  .object({
    position: z.number().int().meta({ description: "1-based place in the queue." }),
    reason: z.string(),
    error: z.string().optional(),
    correlationId: z.string().optional(),
    messageId: z.string().optional(),
    deadLetteredAt: z.string().optional().meta({ format: "date-time" }),
    origin: z.union([
      z.object({ kind: z.literal("queue"), queue: z.string() }),
      z.object({ kind: z.literal("source"), source: z.string() }),
      z.object({ kind: z.literal("unknown") }),
    ]),
    component: z.string().optional(),
    byRabbitmq: z.boolean().meta({ description: "RabbitMQ dead-lettered it (delivery limit)." }),
    bodyBytes: z.number().int(),
    excerpt: z.string(),
  })
  .meta({ id: "DeadLetter" });

const replayOutput = z
  .object({
    queue: z.string(),
    messages: z.number().int(),
    matched: z.number().int(),
    replayed: z.number().int(),
    notReplayed: reasons,
    complete: z.boolean(),
  })
  .meta({ id: "ReplayResult" });

const purgeOutput = z
  .object({
    queue: z.string(),
    messages: z.number().int(),
    purged: z.number().int(),
    complete: z.boolean(),
  })
  .meta({ id: "PurgeResult" });

const queuePath = z.object({ queue: textParam });

const replayBody = z
  .object({
    cids: z.array(z.string().min(1)).min(1).max(10_000).optional(),
    reason: z.string().min(1).optional(),
    all: z.literal(true).optional(),
  })
  .strict()
  .refine(
    (b) =>
      [b.cids !== undefined, b.reason !== undefined, b.all !== undefined].filter(Boolean).length ===
      1,
    { message: "give exactly one of cids, reason or all" },
  );

const errors = {
  "404": failure("No such dead-letter queue."),
  "409": failure("Another operation on this queue is in progress."),
  "503": failure("RabbitMQ is unavailable; retry later."),
};

/** Broker failures as answers: busy 409, missing 404, RabbitMQ down 503. */
async function answer<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof QueueBusyError) {
      throw new ApiError(409, err.message);
    }
    if (err instanceof QueueNotFoundError) {
      throw notFound(err.message);
    }
    if (classifyError(err).kind === "transient") {
      throw new ApiError(503, "RabbitMQ is unavailable; retry later", { "Retry-After": "5" });
    }
    throw err;
  }
}

export function dlqRoutes(service: DeadLetterService, queuePrefix: string): Route[] {
  const named = (given: string): DeadLetterQueue => {
    const queue = resolveDeadLetterQueue(given, queuePrefix, service.queues);
    if (!queue) {
      throw notFound(`${given} is not a dead-letter queue`);
    }
    return queue;
  };
  return [
    route({
      method: "get",
      path: "/dlq",
      summary: "Every dead-letter queue with its count, oldest age and reasons (extension)",
      tags,
      access: "read",
      responses: { "200": json("The queues that exist.", z.array(summaryOutput)), ...errors },
      handler: async () => ok(await answer(() => service.list())),
    }),
    route({
      method: "get",
      path: "/dlq/{queue}",
      summary: "Dead letters of one queue, in order (extension)",
      description: "Looking leaves every message where it was, undelivered.",
      tags,
      access: "read",
      params: queuePath,
      query: z.object({
        limit: intParam
          .pipe(z.number().min(1, "must be at least 1").max(10_000, "must be at most 10000"))
          .optional()
          .meta({ description: "At most this many, 1 to 10000. Default 20." }),
        reason: textParam.optional().meta({ description: "Only dead letters of this reason." }),
        cid: textParam
          .optional()
          .meta({ description: "Only dead letters with this broker_correlation_id." }),
      }),
      responses: {
        "200": json(
          "The first matching dead letters.",
          z.object({
            queue: z.string(),
            messages: z.number().int(),
            matched: z.number().int(),
            letters: z.array(letterOutput),
          }),
        ),
        ...errors,
      },
      handler: async ({ params, query }) => {
        const queue = named(params.queue);
        return ok(
          await answer(() =>
            service.show(queue, {
              limit: query.limit ?? 20,
              reason: query.reason,
              correlationId: query.cid,
            }),
          ),
        );
      },
    }),
    route({
      method: "post",
      path: "/dlq/{queue}/replay",
      summary: "Send dead letters back to the queue or source they came from (extension)",
      description:
        "Exactly one of `cids`, `reason` or `all: true`. Each message is confirmed by RabbitMQ in " +
        "its queue before it leaves the dead-letter queue.",
      tags,
      access: "admin",
      params: queuePath,
      body: replayBody,
      responses: { "200": json("What was replayed.", replayOutput), ...errors },
      handler: async ({ params, body }) => {
        const queue = named(params.queue);
        const selection =
          body.all === true
            ? ({ kind: "all" } as const)
            : body.reason !== undefined
              ? ({ kind: "reason", reason: body.reason } as const)
              : ({ kind: "cids", cids: body.cids ?? [] } as const);
        return ok(await answer(() => service.replay(queue, selection)));
      },
    }),
    route({
      method: "post",
      path: "/dlq/{queue}/purge",
      summary: "Delete the dead letters of one reason (extension)",
      tags,
      access: "admin",
      params: queuePath,
      body: z.object({ reason: z.string().min(1) }).strict(),
      responses: { "200": json("What was purged.", purgeOutput), ...errors },
      handler: async ({ params, body }) => {
        const queue = named(params.queue);
        return ok(await answer(() => service.purge(queue, body.reason)));
      },
    }),
  ];
}
