// The page shell: session, navigation and the hash router (#/physical-devices, #/map, …).
import { call, loadSession, session } from "./api.js";
import { h } from "./dom.js";
import { accountPage } from "./pages/account.js";
import { logicalDevicePage, physicalDevicePage } from "./pages/device.js";
import { logicalListPage, physicalListPage } from "./pages/lists.js";
import { mapPage } from "./pages/map.js";
import { deadLetterQueuePage, deadLetterQueuesPage } from "./pages/dead-letters.js";
import { eventsPage } from "./pages/events.js";
import { healthPage } from "./pages/health.js";
import { replacePage } from "./pages/replace.js";
import { tracePage } from "./pages/trace.js";
import { wombatsPage } from "./pages/wombats.js";
import { setRerender } from "./ui.js";

const routes = [
  [/^#\/physical-devices$/, "physical", () => physicalListPage()],
  [/^#\/logical-devices$/, "logical", () => logicalListPage()],
  [/^#\/physical-device\/(\d+)$/, "physical", (m) => physicalDevicePage(Number(m[1]))],
  [/^#\/logical-device\/(\d+)$/, "logical", (m) => logicalDevicePage(Number(m[1]))],
  [/^#\/map$/, "map", () => mapPage()],
  [/^#\/account$/, "", () => accountPage()],
  [/^#\/wombats$/, "wombats", () => wombatsPage()],
  [/^#\/health$/, "health", () => healthPage()],
  [/^#\/dead-letters$/, "dead-letters", () => deadLetterQueuesPage()],
  [
    /^#\/dead-letters\/([^?]+)(?:\?(.*))?$/,
    "dead-letters",
    (m) => deadLetterQueuePage(decodeURIComponent(m[1]), new URLSearchParams(m[2] ?? "")),
  ],
  [/^#\/events(?:\?(.*))?$/, "events", (m) => eventsPage(new URLSearchParams(m[1] ?? ""))],
  [/^#\/trace(?:\/([^/?]*))?$/, "trace", (m) => tracePage(m[1] || undefined)],
  [/^#\/replace(?:\/(\d+))?$/, "replace", (m) => replacePage(m[1] ? Number(m[1]) : undefined)],
];

const page = document.getElementById("page");
let rendering = 0;

async function render() {
  const hash = location.hash || "#/logical-devices";
  const found = routes.find(([re]) => re.test(hash));
  if (!found) {
    location.replace("#/logical-devices");
    return;
  }
  const [re, nav, build] = found;
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("current", a.dataset.nav === nav);
  }
  const mine = ++rendering;
  page.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  try {
    const content = await build(re.exec(hash));
    if (mine === rendering) {
      page.replaceChildren(...[content].flat());
      page.dispatchEvent(new Event("shown"));
    }
  } catch (err) {
    if (mine === rendering) {
      page.replaceChildren(h("p", { class: "error" }, err.message ?? String(err)));
    }
  }
}

setRerender(render);

window.addEventListener("hashchange", () => {
  document.getElementById("flash").hidden = true;
  void render();
});

document.getElementById("sign-out").addEventListener("click", async () => {
  await call("DELETE", "/session").catch(() => undefined);
  location.assign("/iota/login");
});

await loadSession();
document.getElementById("who").textContent =
  session.username + (session.read_only ? " (read-only)" : "");
document.body.classList.toggle("read-only", session.read_only === true);
await render();
