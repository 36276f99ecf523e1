import { randomUUID } from "node:crypto";

import amqp from "amqplib";

/** One message taken from an exchange by {@link captureExchange}. */
export interface Captured {
  readonly body: Record<string, unknown>;
  readonly props: amqp.MessageProperties;
}

export interface Capture {
  /** Every message so far, in arrival order. */
  readonly messages: Captured[];
  close(): Promise<void>;
}

/**
 * Binds an exclusive queue of its own to `exchange` (a fanout, declared if missing) and collects
 * every JSON message that arrives, the way a writer would receive them.
 */
export async function captureExchange(url: string, exchange: string): Promise<Capture> {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const queue = `capture_${randomUUID()}`;
  await ch.assertExchange(exchange, "fanout", { durable: true });
  await ch.assertQueue(queue, { exclusive: true });
  await ch.bindQueue(queue, exchange, "");
  const messages: Captured[] = [];
  await ch.consume(queue, (m) => {
    if (m) {
      messages.push({
        body: JSON.parse(m.content.toString()) as Record<string, unknown>,
        props: m.properties,
      });
      ch.ack(m);
    }
  });
  return { messages, close: () => conn.close() };
}
