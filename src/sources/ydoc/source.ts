import type { Component, Dependencies } from "../../runtime/component.js";
import { decodeJson } from "../../mqtt/payload.js";
import { createMqttSource } from "../mqtt-source.js";
import { normaliseYdoc, ydocRawTime } from "./normalise.js";

/**
 * YDOC NB-IoT loggers (`broker run ydoc`): JSON on MQTT topics `YDOC/<serial>`. IoTa bound
 * `YDOC.#` on amq.topic, which is the MQTT filter `YDOC/#` (`YDOC_MQTT_TOPICS` changes it).
 */
export function createYdocSource(deps: Dependencies): Component {
  return createMqttSource(deps, {
    component: "ydoc",
    sourceName: "ydoc",
    prefix: "YDOC",
    defaultTopics: ["YDOC/#"],
    deadLetterQueue: "ydoc_ingest.dead",
    decode: decodeJson,
    rawTime: ydocRawTime,
    normalise: normaliseYdoc,
  });
}
