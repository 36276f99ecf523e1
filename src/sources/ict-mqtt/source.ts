import { z } from "zod";

import type { Component, Dependencies } from "../../runtime/component.js";
import { parseSection } from "../../core/config.js";
import { listPhysicalDevices } from "../../db/repositories/physical-devices.js";
import { decodeText } from "../../mqtt/payload.js";
import { createMqttSource } from "../mqtt-source.js";
import { defaultIctConfigPath, loadIctConfig } from "./layouts.js";
import { ictNormaliser, ictRawTime, type LegacyDevice } from "./normalise.js";

/** How often the EagleIO-era devices are re-read (their locations seed new devices). */
const LEGACY_REFRESH_MS = 10 * 60_000;

/**
 * ICT International loggers on an external MQTT broker (`broker run ict-mqtt`): one CSV row per
 * message on `ict/data/<logger>`. The broker is `ICT_MQTT_URL`, or IoTa's `ICT_MQTT_SERVER` +
 * `ICT_MQTT_PORT`; the allowlist and layouts come from `ICT_MQTT_CONFIG`.
 */
export function createIctMqttSource(deps: Dependencies): Component {
  const { ICT_MQTT_CONFIG: path } = parseSection(
    deps.config,
    z.object({ ICT_MQTT_CONFIG: z.string().min(1).optional() }),
    "ICT MQTT",
  );
  const config = loadIctConfig(path ?? defaultIctConfigPath());
  const logger = deps.logger.child({ component: "ict-mqtt" });
  let legacy = new Map<string, LegacyDevice>();
  let timer: NodeJS.Timeout | undefined;

  async function refreshLegacy(): Promise<void> {
    try {
      const devices = await listPhysicalDevices(deps.database.db, { source: "ict_eagleio" });
      // Ordered by uid: the newest device of a name wins, as in IoTa's name-keyed map.
      legacy = new Map(devices.map((d) => [d.name, { uid: d.uid, location: d.location }]));
    } catch (err) {
      logger.warn({ err }, "cannot read the ict_eagleio devices now; keeping the last list");
    }
  }

  return createMqttSource(deps, {
    component: "ict-mqtt",
    sourceName: "ict_mqtt",
    prefix: "ICT",
    defaultTopics: ["ict/data/+"],
    deadLetterQueue: "ict_mqtt_ingest.dead",
    decode: decodeText,
    rawTime: ictRawTime,
    normalise: ictNormaliser(config, (name) => legacy.get(name)),
    async start() {
      await refreshLegacy();
      timer = setInterval(() => void refreshLegacy(), LEGACY_REFRESH_MS);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
    },
  });
}
