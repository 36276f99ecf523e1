import type { Component, Dependencies } from "../../runtime/component.js";
import { decodeJson } from "../../mqtt/payload.js";
import { createMqttSource } from "../mqtt-source.js";
import { draginoRawTime, normaliseDragino } from "./normalise.js";

/** Dragino NB-IoT sensors in JSON mode (`broker run dragino`): MQTT topic `dragino_up` exactly. */
export function createDraginoSource(deps: Dependencies): Component {
  return createMqttSource(deps, {
    component: "dragino",
    sourceName: "dragino_json",
    prefix: "DRAGINO",
    defaultTopics: ["dragino_up"],
    deadLetterQueue: "dragino_ingest.dead",
    decode: decodeJson,
    rawTime: draginoRawTime,
    normalise: normaliseDragino,
  });
}
