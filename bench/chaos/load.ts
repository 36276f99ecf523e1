import { backoffDelay, sleep } from "../../src/core/backoff.js";
import { mqttCorrelationId } from "../../src/mqtt/payload.js";
import { pollCorrelationId } from "../../src/sources/pollers/ids.js";
import { zuluSeconds } from "../../src/sources/pollers/times.js";
import { ttnCorrelationId } from "../../src/sources/ttn/normalise.js";
import { netvoxUplink } from "../../test/helpers/ttn.js";

/**
 * The chaos run's inputs and the senders that behave like the real ones: the webhook client
 * retries whatever was not answered 2xx (up to a limit, as The Things Stack gives up too), the
 * MQTT client publishes at QoS 1 and resends what was not acknowledged, the vendor a poller reads
 * makes its records available one after the other.
 */

export interface Input {
  readonly kind: "ttn" | "ydoc" | "axistech";
  /** Global index, also the `seq` value the message carries (the InfluxDB stand-in reads it). */
  readonly index: number;
  readonly device: string;
  /** Place in its device's sending order. */
  readonly seq: number;
  readonly correlationId: string;
  /** POST body (TTN) or MQTT payload (YDOC); the record's JSON (AxisTech). */
  readonly bytes: Buffer;
  /** MQTT topic (YDOC only). */
  readonly topic?: string;
  /** The vendor's weather record (AxisTech only). */
  readonly record?: AxisTechRecord;
}

export interface AxisTechRecord {
  readonly code: string;
  /** `YYYY-MM-DDThh:mm:ssZ`. */
  readonly time: string;
  /** Carries the input's index (published as `8_AirTemperature`). */
  readonly temperature_avg: number;
}

/**
 * Where a message's index is found at the writers: the `seq` value of TTN and YDOC messages, and
 * the AxisTech record's temperature (`8_AirTemperature`).
 */
export const INDEX_FIELD = /(?:^|[ ,])(?:seq|8_AirTemperature)=([0-9.]+)/;

const BASE_MS = Date.UTC(2024, 0, 1);

/** `yyMMddHHmmss` in UTC, YDOC's `$ts` form. */
function ydocTs(ms: number): number {
  const d = new Date(ms);
  const two = (n: number): string => String(n).padStart(2, "0");
  return Number(
    two(d.getUTCFullYear() % 100) +
      two(d.getUTCMonth() + 1) +
      two(d.getUTCDate()) +
      two(d.getUTCHours()) +
      two(d.getUTCMinutes()) +
      two(d.getUTCSeconds()),
  );
}

export function ttnDevice(n: number): string {
  return `cafe0000${String(n).padStart(8, "0")}`;
}

export function ydocSerial(n: number): number {
  return 9_000_000 + n;
}

/** One TTN uplink: device `d`, its `seq`th, carrying `{seq: index}`. */
export function ttnInput(index: number, d: number, seq: number): Input {
  const devEui = ttnDevice(d);
  const body = netvoxUplink(devEui, seq + 1, new Date(BASE_MS + seq * 60_000).toISOString(), {
    seq: index,
  });
  const bytes = Buffer.from(JSON.stringify(body));
  return {
    kind: "ttn",
    index,
    device: devEui,
    seq,
    correlationId: ttnCorrelationId(body, bytes),
    bytes,
  };
}

/** One YDOC message of logger `d`, its `seq`th, whose one channel `seq` carries `index`. */
export function ydocInput(root: string, index: number, d: number, seq: number): Input {
  const sn = ydocSerial(d);
  const topic = `${root}/YDOC/${sn}`;
  const body = {
    device: { sn, name: `Chaos logger ${d}` },
    channels: [{ code: "SEQ", name: "seq" }],
    data: [{ $ts: ydocTs(BASE_MS + seq * 60_000), SEQ: index }],
  };
  const bytes = Buffer.from(JSON.stringify(body));
  return {
    kind: "ydoc",
    index,
    device: `ydoc-${sn}`,
    seq,
    correlationId: mqttCorrelationId("ydoc", topic, bytes),
    bytes,
    topic,
  };
}

/**
 * AxisTech record times: whole seconds from midnight two days ago, inside the poller's five-day
 * window and never in the future for any run shorter than a day.
 */
const AXIS_BASE_MS = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 2 * 86_400_000;

export function axisStation(n: number): string {
  return `CHAOS${String(n).padStart(3, "0")}`;
}

/**
 * Record `seq` of AxisTech station `d`, carrying `index`; seq -1 is the warm-up record, older
 * than every other one of its station.
 */
export function axisInput(index: number, d: number, seq: number): Input {
  const code = axisStation(d);
  const time = zuluSeconds(AXIS_BASE_MS + (seq + 1) * 1000);
  const record: AxisTechRecord = { code, time, temperature_avg: index };
  return {
    kind: "axistech",
    index,
    device: `axistech-${code}`,
    seq,
    correlationId: pollCorrelationId("axistech", code, time),
    bytes: Buffer.from(JSON.stringify(record)),
    record,
  };
}

export interface InputCounts {
  readonly uplinks: number;
  readonly mqtt: number;
  readonly axis: number;
  readonly ttnDevices: number;
  readonly ydocDevices: number;
  readonly axisStations: number;
}

/** Per-device sequences interleaved: input i goes to device i % devices. */
export function makeInputs(root: string, counts: InputCounts, first = 0, seqBase = 0): Input[] {
  const inputs: Input[] = [];
  for (let i = 0; i < counts.uplinks; i++) {
    const d = i % counts.ttnDevices;
    inputs.push(ttnInput(first + i, d, seqBase + Math.floor(i / counts.ttnDevices)));
  }
  for (let j = 0; j < counts.mqtt; j++) {
    const d = j % counts.ydocDevices;
    const index = first + counts.uplinks + j;
    inputs.push(ydocInput(root, index, d, seqBase + Math.floor(j / counts.ydocDevices)));
  }
  for (let k = 0; k < counts.axis; k++) {
    const d = k % counts.axisStations;
    const index = first + counts.uplinks + counts.mqtt + k;
    inputs.push(axisInput(index, d, seqBase + Math.floor(k / counts.axisStations)));
  }
  return inputs;
}

export interface SendOutcome {
  readonly accepted: boolean;
  /** ms since the run's start when it was accepted (or given up). */
  readonly at: number;
  readonly attempts: number;
}

/** Each answer that was not 2xx (or no answer), at ms since the run's start. */
export type RefusalLog = { at: number; status: string }[];

/**
 * Posts like a webhook sender: retries with backoff while the answer is not 2xx, up to
 * `maxAttempts` attempts, then gives up (the input was never accepted).
 */
export async function postUplink(
  url: string,
  bytes: Buffer,
  clock: () => number,
  refusals: RefusalLog,
  maxAttempts: number,
): Promise<SendOutcome> {
  for (let attempt = 1; ; attempt++) {
    let status: string;
    try {
      const res = await fetch(url, {
        method: "POST",
        body: bytes,
        headers: { "content-type": "application/json" },
        signal: AbortSignal.timeout(30_000),
      });
      await res.arrayBuffer();
      if (res.status >= 200 && res.status < 300) {
        return { accepted: true, at: clock(), attempts: attempt };
      }
      status = String(res.status);
    } catch (err) {
      status = (err as { cause?: { code?: string } }).cause?.code ?? "network";
    }
    refusals.push({ at: clock(), status });
    if (attempt >= maxAttempts) {
      return { accepted: false, at: clock(), attempts: attempt };
    }
    await sleep(backoffDelay(attempt - 1, { initialMs: 100, maxMs: 2_000 }));
  }
}

/**
 * Runs `send` for every input at a steady pace over `durationMs`, `concurrency` at a time at
 * most; resolves when all are done.
 */
export async function paced<T>(
  items: readonly T[],
  durationMs: number,
  concurrency: number,
  send: (item: T) => Promise<void>,
): Promise<void> {
  const start = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      const due = start + (i * durationMs) / items.length;
      const wait = due - performance.now();
      if (wait > 0) {
        await sleep(wait);
      }
      await send(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
