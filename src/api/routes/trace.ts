import { z } from "zod";

import { QueueNotFoundError } from "../../bus/queue-sweep.js";
import {
  deliveriesByCorrelationId,
  messagesByCorrelationId,
  rawMessageByCorrelationId,
} from "../../db/repositories/trace.js";
import type { DeadLetterService } from "../../dlq/service.js";
import { ok, route, type Route } from "../route.js";
import { json } from "../schemas/common.js";

/**
 * Trace a reading (extension): from its correlation id to the raw message as it arrived, the
 * normalised messages made from it, the logical devices they reached (or why they are held),
 * what each writer did where delivery_queue still has it, and dead letters that carry the id.
 */

const dateTime = z.string().meta({ format: "date-time" });

const traceOutput = z
  .object({
    correlation_id: z.string(),
    raw: z
      .object({
        uid: z.number().int(),
        source_name: z.string(),
        physical_uid: z.number().int().nullable(),
        ts: dateTime,
        body: z.unknown(),
      })
      .nullable(),
    messages: z.array(
      z.object({
        uid: z.number().int(),
        p_uid: z.number().int(),
        pd_name: z.string().nullable(),
        l_uid: z.number().int().nullable(),
        ld_name: z.string().nullable(),
        ts: dateTime,
        received_at: dateTime,
        hold_reason: z.string().nullable(),
        released_at: dateTime.nullable(),
        message: z.unknown(),
      }),
    ),
    deliveries: z.array(
      z.object({
        writer: z.string(),
        l_uid: z.number().int(),
        p_uid: z.number().int(),
        state: z.enum(["delivered", "pending", "retrying"]),
        received_at: dateTime,
        attempts: z.number().int(),
        next_attempt_at: dateTime,
        last_error: z.string().nullable(),
        delivered_at: dateTime.nullable(),
      }),
    ),
    dead_letters: z.array(
      z.object({
        queue: z.string(),
        reason: z.string(),
        error: z.string().optional(),
        component: z.string().optional(),
        dead_lettered_at: z.string().optional(),
        excerpt: z.string(),
      }),
    ),
    dead_letters_unchecked: z.array(z.string()).meta({
      description: "Dead-letter queues that could not be searched (busy, RabbitMQ down).",
    }),
  })
  .meta({ id: "Trace" });

export function traceRoutes(deadLetters: DeadLetterService): Route[] {
  return [
    route({
      method: "get",
      path: "/trace/{correlationId}",
      summary: "Everything recorded about one reading, by correlation id (extension)",
      description:
        "Searching the dead-letter queues reads each of them once (nothing is moved), so a " +
        "trace costs more than other reads.",
      tags: ["operations"],
      access: "read",
      params: z.object({ correlationId: z.uuid() }),
      responses: { "200": json("What is recorded (empty lists when nothing).", traceOutput) },
      handler: async ({ db, params }) => {
        const cid = params.correlationId.toLowerCase();
        const raw = await rawMessageByCorrelationId(db, cid);
        const [messages, deliveries, letters] = await Promise.all([
          messagesByCorrelationId(db, cid, raw?.physicalUid ?? undefined),
          deliveriesByCorrelationId(db, cid),
          Promise.all(
            deadLetters.queues.map(async (queue) => {
              try {
                return {
                  queue: queue.name,
                  result: await deadLetters.show(queue, { limit: 20, correlationId: cid }),
                };
              } catch (err) {
                return { queue: queue.name, missing: err instanceof QueueNotFoundError };
              }
            }),
          ),
        ]);
        return ok({
          correlation_id: cid,
          raw: raw
            ? {
                uid: raw.uid,
                source_name: raw.sourceName,
                physical_uid: raw.physicalUid,
                ts: raw.ts,
                body: raw.json ?? raw.text,
              }
            : null,
          messages: messages.map((m) => ({
            uid: m.uid,
            p_uid: m.physicalUid,
            pd_name: m.physicalName,
            l_uid: m.logicalUid,
            ld_name: m.logicalName,
            ts: m.ts,
            received_at: m.receivedAt,
            hold_reason: m.holdReason,
            released_at: m.releasedAt,
            message: m.message,
          })),
          deliveries: deliveries.map((d) => ({
            writer: d.writer,
            l_uid: d.logicalUid,
            p_uid: d.physicalUid,
            state: d.deliveredAt !== null ? "delivered" : d.attempts > 0 ? "retrying" : "pending",
            received_at: d.receivedAt,
            attempts: d.attempts,
            next_attempt_at: d.nextAttemptAt,
            last_error: d.lastError,
            delivered_at: d.deliveredAt,
          })),
          dead_letters: letters.flatMap((l) =>
            "result" in l && l.result
              ? l.result.letters.map((letter) => ({
                  queue: l.queue,
                  reason: letter.reason,
                  ...(letter.error !== undefined ? { error: letter.error } : {}),
                  ...(letter.component !== undefined ? { component: letter.component } : {}),
                  ...(letter.deadLetteredAt !== undefined
                    ? { dead_lettered_at: letter.deadLetteredAt }
                    : {}),
                  excerpt: letter.excerpt,
                }))
              : [],
          ),
          dead_letters_unchecked: letters
            .filter((l) => !("result" in l) && !l.missing)
            .map((l) => l.queue),
        });
      },
    }),
  ];
}
