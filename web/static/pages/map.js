// Logical devices on a map, coloured by last seen (IoTa's classes), one layer per class.
import { api, session } from "../api.js";
import { ago, h, hasLocation } from "../dom.js";

const HOUR = 3_600_000;

/** IoTa's classes: Live ≤ 6 h, Late ≤ 12 h, Missing older, Never seen. */
export const CLASSES = [
  { key: "live", label: "Live", colour: "#2e7d32" },
  { key: "late", label: "Late", colour: "#ef6c00" },
  { key: "missing", label: "Missing", colour: "#c62828" },
  { key: "never", label: "Never seen", colour: "#616161" },
];

export function classOf(lastSeen, now = Date.now()) {
  if (!lastSeen) {
    return "never";
  }
  const age = now - Date.parse(lastSeen);
  return age <= 6 * HOUR ? "live" : age <= 12 * HOUR ? "late" : "missing";
}

export async function mapPage() {
  const devices = await api.get("/logical/devices/?include_properties=false");
  const located = devices.filter((d) => hasLocation(d.location));
  const box = h("div", { id: "map" });
  const legend = h(
    "p",
    { class: "legend" },
    CLASSES.map((c) => h("span", { class: `swatch swatch-${c.key}` }, c.label)),
    ` ${located.length} of ${devices.length} devices have a location.`,
  );
  // Leaflet needs the element in the document to measure it: draw once the page is shown.
  document.getElementById("page").addEventListener(
    "shown",
    () => {
      const L = window.L;
      const map = L.map(box, { preferCanvas: false }).setView([-32.42, 147.5], 7);
      if (session.tile_url) {
        L.tileLayer(session.tile_url, { maxZoom: 19, attribution: session.tile_attribution }).addTo(
          map,
        );
      }
      const layers = Object.fromEntries(CLASSES.map((c) => [c.key, L.layerGroup().addTo(map)]));
      for (const d of located) {
        const cls = CLASSES.find((c) => c.key === classOf(d.last_seen));
        const marker = L.circleMarker([d.location.lat, d.location.long], {
          radius: 8,
          color: "#ffffff",
          weight: 2,
          fillColor: cls.colour,
          fillOpacity: 0.95,
          className: `marker marker-${cls.key} marker-uid-${d.uid}`,
        });
        const popup = h(
          "div",
          {},
          h("a", { href: `#/logical-device/${d.uid}` }, `Device ${d.uid} / ${d.name}`),
          h("br"),
          `Last seen: ${ago(d.last_seen)}`,
        );
        marker.bindPopup(popup).bindTooltip(`${d.name}, last seen ${ago(d.last_seen)}`);
        marker.addTo(layers[cls.key]);
      }
      L.control
        .layers({}, Object.fromEntries(CLASSES.map((c) => [c.label, layers[c.key]])), {
          collapsed: false,
        })
        .addTo(map);
      if (located.length > 0) {
        map.fitBounds(
          L.latLngBounds(located.map((d) => [d.location.lat, d.location.long])).pad(0.2),
          { maxZoom: 12 },
        );
      }
    },
    { once: true },
  );
  return [h("h1", {}, "Map"), legend, box];
}
