import { randomUUID } from "node:crypto";

import { QUEUE_NAMES } from "../../bus/topology.js";
import { sleep } from "../../core/backoff.js";
import type { JsonObject } from "../../core/devices.js";
import { holdRateLimit, takeRateSlot } from "../../db/repositories/rate-limits.js";
import {
  claimUbidotsLabel,
  loadUbidotsLogicalDevice,
  loadUbidotsPhysicalDevice,
  storeUbidotsDevice,
  type UbidotsLogicalDevice,
} from "../../db/repositories/ubidots.js";
import type { WriterComponent, WriterDeps } from "../ports.js";
import {
  createWriter,
  DestinationRefusedError,
  type DeliveryReport,
  type DeliveryResult,
  type WriterMessage,
} from "../writer.js";
import { UbidotsClient, type SharedBudget, type UbidotsAnswer } from "./client.js";
import { deviceMetadata } from "./metadata.js";
import {
  greenBrainLabel,
  messageDots,
  packBodies,
  readStatuses,
  type OwnedDot,
} from "./payload.js";
import { ubidotsSettings } from "./settings.js";

/** IoTa's queue for this writer. */
export const UBIDOTS_QUEUE = QUEUE_NAMES.ubidots;

/** Ubidots answers that mean the token or the account is refused, not the data. */
const REFUSED = new Set([401, 402, 403, 423]);

const rank = { delivered: 0, retry: 1, "dead-letter": 2 } as const;

/** Keeps the worse of two results for a message whose dots went in several bodies. */
function worse(a: DeliveryResult | undefined, b: DeliveryResult): DeliveryResult {
  return a === undefined || rank[b.status] > rank[a.status] ? b : a;
}

function isOk(answer: UbidotsAnswer): boolean {
  return answer.kind === "answer" && answer.status >= 200 && answer.status < 300;
}

function describe(answer: UbidotsAnswer): string {
  return answer.kind === "answer"
    ? `Ubidots answered ${answer.status}: ${answer.text.slice(0, 300)}`
    : answer.error;
}

/**
 * The Ubidots writer (component `ubidots`): coalesces one logical device's messages into
 * `POST /api/v1.6/devices/<label>/` bodies of many dots each, under the token's request budget
 * shared by every copy through PostgreSQL, and reads Ubidots' per-dot status codes. The device's
 * label is stored in `properties.ubidots.label` before the first request; after the first
 * successful post the device's name, location, description and DPI uid are PATCHed (v2.0) and
 * the v2.0 record is stored back in `properties.ubidots`. See doc/ubidots.md.
 */
export function createUbidotsWriter(deps: WriterDeps): WriterComponent {
  const settings = ubidotsSettings(deps.config);
  const logger = deps.logger.child({ component: "ubidots" });
  const db = deps.db;
  const interval = 1000 / settings.requestsPerSecond;
  const budget: SharedBudget = {
    async take(signal) {
      const wait = await takeRateSlot(db, settings.budgetName, interval);
      if (wait > 0) {
        await sleep(wait, signal);
      }
    },
    async hold(ms) {
      logger.warn({ pauseMs: ms }, "Ubidots rate limit reached; every copy pauses");
      await holdRateLimit(db, settings.budgetName, ms);
    },
  };
  const client = new UbidotsClient({
    baseUrl: settings.baseUrl,
    token: settings.token,
    timeoutMs: settings.timeoutMs,
    budget,
  });

  /** The label in force for a device, stored before it is first used. */
  async function labelFor(device: UbidotsLogicalDevice, pUid: number): Promise<string | undefined> {
    const stored = device.ubidots?.label;
    if (typeof stored === "string" && stored !== "") {
      return stored;
    }
    const physical = await loadUbidotsPhysicalDevice(db, pUid);
    const candidate =
      (physical && greenBrainLabel(physical.sourceName, physical.sourceIds)) ?? randomUUID();
    const label = await claimUbidotsLabel(db, device.uid, candidate);
    logger.info({ l_uid: device.uid, label }, "Ubidots label stored for a new device");
    return label;
  }

  /**
   * Posts dots to the device and returns a result per message that had dots. A body Ubidots
   * refuses for its content is sent again one message at a time, so only the culprits fail.
   */
  async function post(
    label: string,
    dots: readonly OwnedDot[],
    report: DeliveryReport,
  ): Promise<Map<number, DeliveryResult>> {
    const results = new Map<number, DeliveryResult>();
    const set = (m: number, r: DeliveryResult): void => {
      results.set(m, worse(results.get(m), r));
    };
    const bodies = packBodies(dots, settings.maxBodyBytes - 1);
    for (let b = 0; b < bodies.length; b++) {
      const body = bodies[b]!;
      const answer = await client.request(
        "POST",
        `/api/v1.6/devices/${encodeURIComponent(label)}/`,
        report,
        body.text,
      );
      if (answer.kind === "answer" && REFUSED.has(answer.status)) {
        throw new DestinationRefusedError(describe(answer));
      }
      const transient =
        answer.kind === "failed" ||
        answer.status === 429 ||
        answer.status === 420 ||
        answer.status >= 500;
      if (transient) {
        // The destination is struggling: this body and every one not sent yet wait.
        const retry: DeliveryResult = {
          status: "retry",
          error: describe(answer),
          ...(answer.kind === "answer" && answer.retryAfterMs !== undefined
            ? { retryAfterMs: answer.retryAfterMs }
            : {}),
        };
        for (const rest of bodies.slice(b)) {
          for (const m of rest.messages) {
            set(m, retry);
          }
        }
        return results;
      }
      if (answer.status === 200 || answer.status === 201 || answer.status === 202) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(answer.text);
        } catch {
          parsed = undefined;
        }
        for (const [m, status] of readStatuses(body, parsed)) {
          if (status.ok) {
            set(m, { status: "delivered" });
          } else if (
            status.code === undefined ||
            status.code === 429 ||
            status.code === 420 ||
            status.code >= 500
          ) {
            set(m, {
              status: "retry",
              error: `Ubidots gave no success status for a dot (${status.code ?? "none"})`,
            });
          } else {
            set(m, {
              status: "dead-letter",
              reason: `ubidots_dot_${status.code}`,
              error: `Ubidots refused a dot with status ${status.code}`,
            });
          }
        }
        continue;
      }
      // 204 ("not saved") and every other 4xx: the content is refused.
      if (body.messages.size > 1) {
        for (const m of body.messages) {
          const alone = await post(
            label,
            dots.filter((d) => d.message === m),
            report,
          );
          for (const [k, r] of alone) {
            set(k, r);
          }
        }
        continue;
      }
      for (const m of body.messages) {
        set(m, {
          status: "dead-letter",
          reason: answer.status === 204 ? "ubidots_not_saved" : `ubidots_http_${answer.status}`,
          error: describe(answer),
        });
      }
    }
    return results;
  }

  /** PATCHes the new device's metadata and stores its v2.0 record; failures are only logged. */
  async function describeDevice(
    device: UbidotsLogicalDevice,
    label: string,
    pUid: number,
    report: DeliveryReport,
  ): Promise<void> {
    const path = `/api/v2.0/devices/~${encodeURIComponent(label)}`;
    const physical = await loadUbidotsPhysicalDevice(db, pUid);
    const patch = await client.request(
      "PATCH",
      path,
      report,
      JSON.stringify(deviceMetadata(device, physical)),
    );
    if (!isOk(patch)) {
      logger.warn({ l_uid: device.uid, label, error: describe(patch) }, "Ubidots PATCH failed");
    }
    const read = await client.request("GET", path, report);
    if (read.kind !== "answer" || read.status !== 200) {
      logger.warn(
        { l_uid: device.uid, label, error: describe(read) },
        "cannot read the Ubidots device record yet; the label is kept, the next batch tries again",
      );
      return;
    }
    let record: unknown;
    try {
      record = JSON.parse(read.text);
    } catch {
      record = undefined;
    }
    if (record === null || typeof record !== "object" || Array.isArray(record)) {
      logger.warn({ l_uid: device.uid, label }, "Ubidots device record is not an object");
      return;
    }
    await storeUbidotsDevice(db, device.uid, label, record as JsonObject);
    logger.info({ l_uid: device.uid, label }, "Ubidots device described and its record stored");
  }

  async function deliverDevice(
    messages: readonly WriterMessage[],
    report: DeliveryReport,
  ): Promise<DeliveryResult[]> {
    const first = messages[0]!.message;
    const device = await loadUbidotsLogicalDevice(db, first.l_uid);
    // Deleted since the mapper forwarded the message (between the load and the label, too).
    const label = device && (await labelFor(device, first.p_uid));
    if (device === undefined || label === undefined) {
      return messages.map(() => ({
        status: "dead-letter",
        reason: "unknown_device",
        error: `logical device ${first.l_uid} does not exist`,
      }));
    }
    const dots: OwnedDot[] = [];
    messages.forEach((m, i) => {
      const made = messageDots(m.message, i);
      dots.push(...made.dots);
      if (made.skipped.length > 0) {
        report.skipped("not_numeric", made.skipped.length);
        logger.warn(
          {
            broker_correlation_id: m.message.broker_correlation_id,
            l_uid: device.uid,
            skipped: made.skipped,
          },
          "values that are not numbers were not sent to Ubidots",
        );
      }
    });
    const results = dots.length > 0 ? await post(label, dots, report) : new Map();
    const out = messages.map(
      (_, i): DeliveryResult => results.get(i) ?? { status: "delivered" }, // no numeric value: nothing to send
    );
    if (typeof device.ubidots?.id !== "string" && out.some((r) => r.status === "delivered")) {
      await describeDevice(device, label, first.p_uid, report).catch((err: unknown) =>
        logger.warn({ err, l_uid: device.uid }, "cannot describe the Ubidots device yet"),
      );
    }
    return out;
  }

  async function deliver(
    messages: readonly WriterMessage[],
    report: DeliveryReport,
  ): Promise<DeliveryResult[]> {
    // Claims are per device; grouping keeps this right for any batch.
    const groups = new Map<number, number[]>();
    messages.forEach((m, i) => {
      const g = groups.get(m.message.l_uid) ?? [];
      g.push(i);
      groups.set(m.message.l_uid, g);
    });
    const out = new Array<DeliveryResult>(messages.length);
    for (const indexes of groups.values()) {
      const results = await deliverDevice(
        indexes.map((i) => messages[i]!),
        report,
      );
      indexes.forEach((i, k) => (out[i] = results[k]!));
    }
    return out;
  }

  return createWriter(deps, {
    name: "ubidots",
    queue: UBIDOTS_QUEUE,
    logger,
    deliver,
    perDevice: true,
    batchSize: settings.batchMessages,
    concurrency: settings.concurrency,
    async onStart() {
      logger.info(
        { url: settings.baseUrl, requestsPerSecond: settings.requestsPerSecond },
        "delivering logical messages to Ubidots",
      );
    },
  });
}
