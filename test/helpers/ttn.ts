import { readFileSync } from "node:fs";

import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import type { Config } from "../../src/core/config.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);

/** A file from test/fixtures/recorded as text. */
export function fixtureText(name: string): string {
  return readFileSync(new URL(name, fixtures), "utf8");
}

const netvox = JSON.parse(
  fixtureText("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json"),
) as Record<string, unknown> & {
  uplink_message: Record<string, unknown>;
  end_device_ids: Record<string, unknown>;
};

/**
 * The recorded Netvox uplink re-addressed to another device, frame and time: a realistic TTN
 * body for streams of distinct uplinks.
 */
export function netvoxUplink(
  devEui: string,
  fCnt: number,
  receivedAt: string,
  payload: Record<string, unknown> = { n: fCnt },
): Record<string, unknown> {
  return {
    ...netvox,
    end_device_ids: { ...netvox.end_device_ids, dev_eui: devEui, device_id: `dev-${devEui}` },
    uplink_message: {
      ...netvox.uplink_message,
      f_cnt: fCnt,
      received_at: receivedAt,
      decoded_payload: payload,
    },
  };
}

/** Posts like a webhook sender that retries until the router says the uplink is durable. */
export async function deliverUplink(url: string, body: unknown): Promise<number> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(url, { method: "POST", body: text });
      await res.arrayBuffer();
      if (res.status !== 503) {
        return res.status;
      }
    } catch {
      // connection refused or reset while the router restarts: retry
    }
    if (attempt > 300) {
      throw new Error("uplink never accepted");
    }
    await new Promise((r) => setTimeout(r, 50 + Math.min(attempt, 20) * 20));
  }
}

/** The queues a webhook test system leaves behind: the mapper's, its dead letters, the webhook's. */
export function ttnWebhookQueues(amqp: Config["amqp"]): string[] {
  const mapper = amqp.queuePrefix + QUEUE_NAMES.mapper;
  return [mapper, deadLetterQueueName(mapper), amqp.queuePrefix + TTN_DEAD_LETTER_QUEUE];
}
