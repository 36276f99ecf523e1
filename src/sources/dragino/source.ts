import type { Component, Dependencies } from "../../runtime/component.js";
import { decodeJson } from "../../mqtt/payload.js";
import { createMqttSource, type MqttSourceSpec } from "../mqtt-source.js";
import { draginoRawTime, normaliseDragino } from "./normalise.js";

/** The source's names and pure rules (also what `broker dlq replay` runs a dead letter through). */
export const DRAGINO_SOURCE = {
  component: "dragino",
  sourceName: "dragino_json",
  prefix: "DRAGINO",
  defaultTopics: ["dragino_up"],
  deadLetterQueue: "dragino_ingest.dead",
  decode: decodeJson,
  rawTime: draginoRawTime,
  normalise: normaliseDragino,
} satisfies MqttSourceSpec<unknown>;

/** Dragino NB-IoT sensors in JSON mode (`broker run dragino`): MQTT topic `dragino_up` exactly. */
export function createDraginoSource(deps: Dependencies): Component {
  return createMqttSource(deps, DRAGINO_SOURCE);
}
