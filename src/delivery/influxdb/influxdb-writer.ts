import { z } from "zod";

import { QUEUE_NAMES } from "../../bus/topology.js";
import { ConfigError, parseSection, type Config } from "../../core/config.js";
import { deadline } from "../../core/backoff.js";
import { PermanentError, TransientError } from "../../core/errors.js";
import { parseInstant } from "../../core/time.js";
import type { WriterComponent, WriterDeps } from "../ports.js";
import {
  createWriter,
  DestinationRefusedError,
  type DeliveryReport,
  type DeliveryResult,
  type WriterMessage,
} from "../writer.js";
import { messageLines } from "./line-protocol.js";

/** IoTa-style queue name for this writer. */
export const INFLUXDB_QUEUE = QUEUE_NAMES.influxdb;

const schema = z.object({
  INFLUXDB_URL: z.url().optional(),
  INFLUXDB_API: z.enum(["v1", "v2"]).optional(),
  INFLUXDB_DB: z.string().min(1).optional(),
  INFLUXDB_USER: z.string().optional(),
  INFLUXDB_PASSWORD: z.string().optional(),
  INFLUXDB_ORG: z.string().min(1).optional(),
  INFLUXDB_BUCKET: z.string().min(1).optional(),
  INFLUXDB_TOKEN: z.string().min(1).optional(),
  INFLUXDB_MEASUREMENT: z.string().min(1).optional(),
  INFLUXDB_TIMEOUT_MS: z.coerce.number().int().min(1).default(30_000),
  INFLUXDB_BATCH_MESSAGES: z.coerce.number().int().min(1).max(50_000).default(5_000),
});

export interface InfluxSettings {
  /** Scheme, host and port, e.g. http://localhost:8086. */
  readonly baseUrl: string;
  /** `v1`: `/write?db=` with user/password; `v2`: `/api/v2/write?org=&bucket=` with a token (2.x, 3.x). */
  readonly api: "v1" | "v2";
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Measurement for a logical device: INFLUXDB_MEASUREMENT for all, else `ld_<l_uid>`. */
  readonly measurement: (lUid: number) => string;
  /** Longest wait for one write, in ms. Default 30 000. */
  readonly timeoutMs: number;
  /** Messages per write request. Default 5 000. */
  readonly batchMessages: number;
}

export function influxSettings(config: Pick<Config, "env">): InfluxSettings {
  const s = parseSection(config, schema, "influxdb");
  if (s.INFLUXDB_URL === undefined) {
    throw new ConfigError("the influxdb component needs INFLUXDB_URL");
  }
  const api = s.INFLUXDB_API ?? (s.INFLUXDB_BUCKET !== undefined ? "v2" : "v1");
  const baseUrl = new URL(s.INFLUXDB_URL).origin;
  const fixed = s.INFLUXDB_MEASUREMENT;
  const common = {
    baseUrl,
    api,
    measurement: (lUid: number) => fixed ?? `ld_${lUid}`,
    timeoutMs: s.INFLUXDB_TIMEOUT_MS,
    batchMessages: s.INFLUXDB_BATCH_MESSAGES,
  } as const;
  if (api === "v1") {
    if (s.INFLUXDB_DB === undefined) {
      throw new ConfigError("INFLUXDB_API=v1 needs INFLUXDB_DB");
    }
    const query = new URLSearchParams({ db: s.INFLUXDB_DB, precision: "ns" });
    const headers: Record<string, string> =
      s.INFLUXDB_USER !== undefined
        ? {
            Authorization: `Basic ${Buffer.from(`${s.INFLUXDB_USER}:${s.INFLUXDB_PASSWORD ?? ""}`).toString("base64")}`,
          }
        : {};
    return { ...common, path: `/write?${query}`, headers };
  }
  if (
    s.INFLUXDB_ORG === undefined ||
    s.INFLUXDB_BUCKET === undefined ||
    s.INFLUXDB_TOKEN === undefined
  ) {
    throw new ConfigError("INFLUXDB_API=v2 needs INFLUXDB_ORG, INFLUXDB_BUCKET and INFLUXDB_TOKEN");
  }
  const query = new URLSearchParams({
    org: s.INFLUXDB_ORG,
    bucket: s.INFLUXDB_BUCKET,
    precision: "ns",
  });
  return {
    ...common,
    path: `/api/v2/write?${query}`,
    headers: { Authorization: `Token ${s.INFLUXDB_TOKEN}` },
  };
}

/**
 * The InfluxDB writer (component `influxdb`): writes batches of thousands of logical messages as
 * line protocol, one request per batch. 2xx: delivered. 401/403, and 404 (no such database or
 * bucket): the writer suspends until the credentials or configuration are fixed. 400/413/422:
 * the content (the framework retries each message alone, so only the bad ones are
 * dead-lettered). 429, 5xx, timeouts and connection errors: retried with backoff.
 */
export function createInfluxWriter(deps: WriterDeps): WriterComponent {
  const settings = influxSettings(deps.config);
  const logger = deps.logger.child({ component: "influxdb" });

  async function deliver(
    messages: readonly WriterMessage[],
    report: DeliveryReport,
  ): Promise<DeliveryResult[]> {
    const lines: string[] = [];
    for (const { message } of messages) {
      const made = messageLines(message, settings.measurement(message.l_uid), parseInstant);
      lines.push(...made.lines);
      if (made.skipped > 0) {
        report.skipped("not_numeric", made.skipped);
        logger.warn(
          {
            broker_correlation_id: message.broker_correlation_id,
            l_uid: message.l_uid,
            skipped: made.skipped,
          },
          "values that are not numbers were not written to InfluxDB",
        );
      }
    }
    if (lines.length > 0) {
      await write(lines.join("\n"), report);
    }
    return messages.map(() => ({ status: "delivered" }));
  }

  async function write(body: string, report: DeliveryReport): Promise<void> {
    const started = performance.now();
    let res: Response;
    let text: string;
    const limit = deadline(settings.timeoutMs, report.signal);
    try {
      res = await fetch(`${settings.baseUrl}${settings.path}`, {
        method: "POST",
        headers: { ...settings.headers, "Content-Type": "text/plain; charset=utf-8" },
        body,
        signal: limit.signal,
      });
      text = await res.text();
    } catch (err) {
      const timeout =
        limit.signal.reason instanceof DOMException && limit.signal.reason.name === "TimeoutError";
      report.request(timeout ? "timeout" : "network", (performance.now() - started) / 1000);
      throw new TransientError(`InfluxDB write failed: ${(err as Error).message}`, { cause: err });
    } finally {
      limit.done();
    }
    report.request(String(res.status), (performance.now() - started) / 1000);
    if (res.ok) {
      return;
    }
    const what = `InfluxDB answered ${res.status}: ${text.slice(0, 300)}`;
    if (res.status === 401 || res.status === 403 || res.status === 404) {
      throw new DestinationRefusedError(what);
    }
    if (res.status === 400 || res.status === 413 || res.status === 422) {
      throw new PermanentError(`influxdb_rejected_${res.status}`, what);
    }
    throw new TransientError(what);
  }

  return createWriter(deps, {
    name: "influxdb",
    queue: INFLUXDB_QUEUE,
    logger,
    deliver,
    batchSize: settings.batchMessages,
    concurrency: 2,
    async onStart() {
      logger.info(
        { url: settings.baseUrl, api: settings.api },
        "writing logical messages to InfluxDB",
      );
    },
  });
}
