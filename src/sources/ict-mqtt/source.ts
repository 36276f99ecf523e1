import { z } from "zod";

import type { Component, Dependencies } from "../../runtime/component.js";
import { parseSection } from "../../core/config.js";
import { listPhysicalDevices } from "../../db/repositories/physical-devices.js";
import { decodeText } from "../../mqtt/payload.js";
import { createMqttSource, type MqttSourceSpec } from "../mqtt-source.js";
import { defaultIctConfigPath, loadIctConfig, type IctConfig } from "./layouts.js";
import { ictNormaliser, ictRawTime, type LegacyDevice } from "./normalise.js";

/** How often the EagleIO-era devices are re-read (their locations seed new devices). */
const LEGACY_REFRESH_MS = 10 * 60_000;

function ictConfig(deps: Dependencies): IctConfig {
  const { ICT_MQTT_CONFIG: path } = parseSection(
    deps.config,
    z.object({ ICT_MQTT_CONFIG: z.string().min(1).optional() }),
    "ICT MQTT",
  );
  return loadIctConfig(path ?? defaultIctConfigPath());
}

function ictSpec(config: IctConfig, legacy: (name: string) => LegacyDevice | undefined) {
  return {
    component: "ict-mqtt",
    sourceName: "ict_mqtt",
    prefix: "ICT",
    defaultTopics: ["ict/data/+"],
    deadLetterQueue: "ict_mqtt_ingest.dead",
    decode: decodeText,
    rawTime: ictRawTime,
    normalise: ictNormaliser(config, legacy),
  } satisfies MqttSourceSpec<string>;
}

/** The source's rules with the EagleIO-era devices read now, for `broker dlq replay`. */
export async function ictMqttReplaySpec(deps: Dependencies): Promise<MqttSourceSpec<string>> {
  const legacy = await legacyDevices(deps);
  return ictSpec(ictConfig(deps), (name) => legacy.get(name));
}

/** The EagleIO-era devices by name; ordered by uid, the newest of a name wins (IoTa's map). */
async function legacyDevices(deps: Dependencies): Promise<Map<string, LegacyDevice>> {
  const devices = await listPhysicalDevices(deps.database.db, { source: "ict_eagleio" });
  return new Map(devices.map((d) => [d.name, { uid: d.uid, location: d.location }]));
}

/**
 * ICT International loggers on an external MQTT broker (`broker run ict-mqtt`): one CSV row per
 * message on `ict/data/<logger>`. The broker is `ICT_MQTT_URL`, or IoTa's `ICT_MQTT_SERVER` +
 * `ICT_MQTT_PORT`; the allowlist and layouts come from `ICT_MQTT_CONFIG`.
 */
export function createIctMqttSource(deps: Dependencies): Component {
  const config = ictConfig(deps);
  const logger = deps.logger.child({ component: "ict-mqtt" });
  let legacy = new Map<string, LegacyDevice>();
  let timer: NodeJS.Timeout | undefined;

  async function refreshLegacy(): Promise<void> {
    try {
      legacy = await legacyDevices(deps);
    } catch (err) {
      logger.warn({ err }, "cannot read the ict_eagleio devices now; keeping the last list");
    }
  }

  return createMqttSource(deps, {
    ...ictSpec(config, (name) => legacy.get(name)),
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
