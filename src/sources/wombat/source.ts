import type { Component, Dependencies } from "../../runtime/component.js";
import { decodeJson } from "../../mqtt/payload.js";
import { createMqttSource, type MqttSourceSpec } from "../mqtt-source.js";
import { normaliseWombat, wombatRawTime } from "./normalise.js";

/** The source's names and pure rules (also what `broker dlq replay` runs a dead letter through). */
export const WOMBAT_SOURCE = {
  component: "wombat",
  sourceName: "wombat",
  prefix: "WOMBAT",
  defaultTopics: ["wombat"],
  deadLetterQueue: "wombat_ingest.dead",
  decode: decodeJson,
  rawTime: wombatRawTime,
  normalise: normaliseWombat,
} satisfies MqttSourceSpec<unknown>;

/**
 * Wombat loggers (`broker run wombat`): waist-shaped JSON on the MQTT topic `wombat` exactly
 * (the web app's `wombat/<serial>` configuration topics are not telemetry).
 */
export function createWombatSource(deps: Dependencies): Component {
  return createMqttSource(deps, WOMBAT_SOURCE);
}
