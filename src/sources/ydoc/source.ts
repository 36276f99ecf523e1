import type { Component, Dependencies } from "../../runtime/component.js";
import { decodeJson } from "../../mqtt/payload.js";
import { createMqttSource, type MqttSourceSpec } from "../mqtt-source.js";
import { normaliseYdoc, ydocRawTime } from "./normalise.js";

/** The source's names and pure rules (also what `broker dlq replay` runs a dead letter through). */
export const YDOC_SOURCE = {
  component: "ydoc",
  sourceName: "ydoc",
  prefix: "YDOC",
  defaultTopics: ["YDOC/#"],
  deadLetterQueue: "ydoc_ingest.dead",
  decode: decodeJson,
  rawTime: ydocRawTime,
  normalise: normaliseYdoc,
} satisfies MqttSourceSpec<unknown>;

/**
 * YDOC NB-IoT loggers (`broker run ydoc`): JSON on MQTT topics `YDOC/<serial>`. IoTa bound
 * `YDOC.#` on amq.topic, which is the MQTT filter `YDOC/#` (`YDOC_MQTT_TOPICS` changes it).
 */
export function createYdocSource(deps: Dependencies): Component {
  return createMqttSource(deps, YDOC_SOURCE);
}
