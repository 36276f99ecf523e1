/**
 * What a dead letter says about itself, read from the headers the two kinds of dead-lettering
 * leave (pure):
 *
 * - ours (`BatchConsumer` for a queue's consumer, `IngestPipeline` for a source): the
 *   `x-broker-reason`, `x-broker-error` headers, and `x-broker-queue` (a consumer's queue) or
 *   `x-broker-source` (a source's raw body); the AMQP `timestamp` is the dead-lettering time;
 * - RabbitMQ's own (the quorum queue's delivery limit, a rejection, an expiry): the `x-death`
 *   list, newest first, with `reason`, `queue`, `count` and `time`, and `x-first-death-*`.
 */

/** The part of an AMQP message this module reads. */
export interface LetterInput {
  readonly position: number;
  readonly body: Buffer;
  readonly properties: {
    readonly headers: Readonly<Record<string, unknown>>;
    readonly correlationId?: string;
    readonly messageId?: string;
    /** Seconds since the epoch. */
    readonly timestamp?: number;
  };
}

/** Where a dead letter came from, and so where a replay takes it. */
export type Origin =
  | { readonly kind: "queue"; readonly queue: string }
  | { readonly kind: "source"; readonly source: string }
  | { readonly kind: "unknown" };

export interface DeadLetter {
  /** 1-based position in its dead-letter queue. */
  readonly position: number;
  /** Short machine-readable reason (`unknown_device`, `delivery_limit`, …). */
  readonly reason: string;
  readonly error: string | undefined;
  readonly correlationId: string | undefined;
  readonly messageId: string | undefined;
  /** When it was dead-lettered (ISO-8601 UTC), when the message says. */
  readonly deadLetteredAt: string | undefined;
  readonly origin: Origin;
  /** The component that dead-lettered it (ours), when named. */
  readonly component: string | undefined;
  /** True when RabbitMQ dead-lettered it itself (`x-death`), not our code. */
  readonly byRabbitmq: boolean;
  readonly bodyBytes: number;
  /** The body's first characters as text, for a person to read. */
  readonly excerpt: string;
}

/** Characters of the body shown in an excerpt. */
export const EXCERPT_CHARS = 300;

/** A header's value as text (strings, and the bytes amqplib gives for some), else undefined. */
export function headerText(value: unknown): string | undefined {
  if (typeof value === "string") {
    return value;
  }
  if (Buffer.isBuffer(value)) {
    // amqplib hands long-string headers of unknown encoding back as bytes.
    return value.toString("utf8");
  }
  return undefined;
}

/** amqplib gives an AMQP timestamp as `{"!": "timestamp", value}` inside tables, else a number. */
function seconds(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === "object" && value !== null && "value" in value) {
    return seconds((value as { value: unknown }).value);
  }
  return undefined;
}

function isoFromSeconds(value: number | undefined): string | undefined {
  if (value === undefined) {
    return undefined;
  }
  const date = new Date(value * 1000);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

interface Death {
  readonly reason?: string;
  readonly queue?: string;
  readonly count?: number;
  readonly time?: number;
}

/** The newest `x-death` entry (RabbitMQ keeps the list newest first). */
function latestDeath(headers: Readonly<Record<string, unknown>>): Death | undefined {
  const deaths = headers["x-death"];
  if (!Array.isArray(deaths) || deaths.length === 0) {
    return undefined;
  }
  const d = deaths[0] as Record<string, unknown>;
  return {
    reason: headerText(d["reason"]),
    queue: headerText(d["queue"]),
    count: typeof d["count"] === "number" ? d["count"] : undefined,
    time: seconds(d["time"]),
  };
}

function bodyCorrelationId(body: Buffer): string | undefined {
  if (body.length === 0 || body.length > 1_000_000 || body[0] !== 0x7b) {
    return undefined;
  }
  try {
    const parsed = JSON.parse(body.toString("utf8")) as unknown;
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      return headerText((parsed as Record<string, unknown>)["broker_correlation_id"]);
    }
  } catch {
    // not JSON: nothing to read
  }
  return undefined;
}

/** The body's first characters, control characters escaped so a terminal shows them safely. */
export function excerpt(body: Buffer, chars = EXCERPT_CHARS): string {
  // At most 4 bytes per character: decoding this much is enough to find `chars` of them.
  const complete = body.length <= chars * 4;
  const all = [...body.subarray(0, chars * 4).toString("utf8")];
  const cut = all.slice(0, chars).join("");
  // eslint-disable-next-line no-control-regex
  const safe = cut.replace(/[\u0000-\u001f\u007f]/g, (c) =>
    c === "\n" ? "\\n" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return complete && all.length <= chars ? safe : `${safe}…`;
}

/** Reads one dead letter. */
export function describeLetter(input: LetterInput): DeadLetter {
  const { headers } = input.properties;
  const ourReason = headerText(headers["x-broker-reason"]);
  const death = latestDeath(headers);
  const queue = headerText(headers["x-broker-queue"]);
  const source = headerText(headers["x-broker-source"]);
  const byRabbitmq = ourReason === undefined && death !== undefined;
  let origin: Origin = { kind: "unknown" };
  if (queue !== undefined) {
    origin = { kind: "queue", queue };
  } else if (source !== undefined) {
    origin = { kind: "source", source };
  } else if (death?.queue !== undefined) {
    origin = { kind: "queue", queue: death.queue };
  }
  let error = headerText(headers["x-broker-error"]);
  if (byRabbitmq && error === undefined && death?.reason === "delivery_limit") {
    error = "delivered more often than the queue's delivery limit allows (a crash loop?)";
  }
  return {
    position: input.position,
    reason: ourReason ?? death?.reason ?? headerText(headers["x-first-death-reason"]) ?? "unknown",
    error,
    correlationId: input.properties.correlationId ?? bodyCorrelationId(input.body),
    messageId: input.properties.messageId,
    deadLetteredAt: isoFromSeconds(byRabbitmq ? death?.time : input.properties.timestamp),
    origin,
    component: headerText(headers["x-broker-component"]),
    byRabbitmq,
    bodyBytes: input.body.length,
    excerpt: excerpt(input.body),
  };
}

/**
 * Headers that describe a message's dead-lettering or its deliveries. A replayed message goes
 * back without them: it starts over (the delivery limit counts from zero again) and, should it
 * fail again, is described by its new failure alone.
 */
const DEAD_LETTER_HEADERS = /^(x-death|x-first-death-.*|x-last-death-.*|x-delivery-count)$/;
const OUR_HEADERS = new Set([
  "x-broker-reason",
  "x-broker-error",
  "x-broker-queue",
  "x-broker-component",
  "x-broker-source",
]);

/** The headers a replayed message carries: its own, without any trace of dead-lettering. */
export function replayHeaders(headers: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(headers).filter(([k]) => !DEAD_LETTER_HEADERS.test(k) && !OUR_HEADERS.has(k)),
  );
}
