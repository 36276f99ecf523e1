import type { Config } from "../core/config.js";
import { PermanentError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { Db } from "../db/database.js";
import type { RawRecord } from "../db/repositories/replay-runs.js";
import { decodeJsonText } from "./raw-copy.js";
import type { RawNormalisation, RawNormaliser } from "../replay/ports.js";
import type { MqttNormalisation } from "./mqtt-source.js";
import { normaliseDragino } from "./dragino/normalise.js";
import { TtnReplayNormaliser } from "./ttn/replay.js";
import { normaliseWombat } from "./wombat/normalise.js";
import { normaliseYdoc } from "./ydoc/normalise.js";

/**
 * The sources whose raw messages a replay can normalise again, and how. An MQTT source's raw row
 * holds the payload but not the topic: the JSON sources below do not read the topic, ICT's CSV
 * does (the logger's name is its last level), so ict_mqtt is not replayable. The pollers store
 * what they fetched per request, not per device message; they are not replayable either.
 */
const MQTT_JSON: Readonly<
  Record<
    string,
    (
      value: unknown,
      arrival: { topic: string; correlationId: string; arrivedAt: string },
    ) => MqttNormalisation
  >
> = {
  ydoc: normaliseYdoc,
  dragino_json: normaliseDragino,
  wombat: normaliseWombat,
};

/** Source names `broker replay` takes. */
export const REPLAYABLE_SOURCES: readonly string[] = ["ttn", ...Object.keys(MQTT_JSON)];

function normaliseMqttJson(
  normalise: (typeof MQTT_JSON)[string],
  raw: RawRecord,
): RawNormalisation {
  let value: unknown = raw.json;
  if (raw.text !== null) {
    const decoded = decodeJsonText(raw.text, "the payload");
    if (!decoded.ok) {
      return { ok: false, reason: decoded.reason, error: decoded.error };
    }
    value = decoded.value;
  }
  try {
    const n = normalise(value, { topic: "", correlationId: raw.correlationId, arrivedAt: raw.ts });
    return {
      ok: true,
      devices: n.devices.map((d) => ({ lookup: d.device.lookup, messages: d.messages })),
    };
  } catch (err) {
    if (err instanceof PermanentError) {
      return { ok: false, reason: err.reason, error: err.message };
    }
    throw err;
  }
}

/** Today's normalisers of every replayable source, for one replay (close it afterwards). */
export async function openRawNormaliser(deps: {
  config: Config;
  db: Db;
  logger: Logger;
}): Promise<RawNormaliser> {
  let ttn: Promise<TtnReplayNormaliser> | undefined;
  return {
    supports: (source) => REPLAYABLE_SOURCES.includes(source),
    async normalise(raw) {
      if (raw.sourceName === "ttn") {
        ttn ??= TtnReplayNormaliser.open(deps);
        return (await ttn).normalise(raw);
      }
      const mqtt = MQTT_JSON[raw.sourceName];
      return mqtt
        ? normaliseMqttJson(mqtt, raw)
        : { ok: false, reason: "replay_unsupported", error: `source ${raw.sourceName}` };
    },
    async close() {
      await (await ttn)?.close();
    },
  };
}
