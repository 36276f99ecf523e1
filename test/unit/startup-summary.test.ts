import { describe, expect, it } from "vitest";

import {
  formatStartupSummary,
  startupSummary,
  type StartupFacts,
} from "../../src/cli/startup-summary.js";

const all: StartupFacts = {
  components: ["ttn-webhook", "mapper", "frred", "event-relay", "api", "web"],
  opsPort: 9464,
  production: false,
  rabbitmqConnected: true,
  webhook: { port: 5688, secretHeader: undefined, basic: false },
  api: { port: 5687, prefix: "/broker/api", admins: 0 },
  frredDir: "/srv/databolt/raw_data",
  webPort: 5000,
  brokerCommand: "node dist/src/cli/main.js",
};

const labelled = (facts: StartupFacts) =>
  Object.fromEntries(startupSummary(facts).map((i) => [i.label, i.lines]));

describe("start-up summary", () => {
  it("says where to point The Things Stack, where the API and its docs are, and where files go", () => {
    const s = labelled(all);
    expect(s["TTN webhook"]![0]).toBe("http://localhost:5688/ttn/webhook/up");
    expect(s["TTN webhook"]![1]).toContain(
      "Base URL http://<this host's public address>:5688/ttn/webhook, uplink path /up",
    );
    expect(s["TTN webhook"]![2]).toMatch(/accepts anyone: set TTN_WEBHOOK_SECRET/);
    expect(s["REST API"]).toEqual([
      "http://localhost:5687/broker/api",
      "docs: http://localhost:5687/broker/api/docs",
      "no admin user yet; create one: node dist/src/cli/main.js users add -u admin -p '<password>' -a",
    ]);
    expect(s["FRRED files"]).toEqual(["/srv/databolt/raw_data"]);
    expect(s["web app"]).toEqual(["http://localhost:5000/iota"]);
    expect(s.health).toEqual(["http://localhost:9464/readyz (metrics: /metrics)"]);
  });

  it("says which credentials the webhook wants, and leaves out the admin hint once there is one", () => {
    const s = labelled({
      ...all,
      webhook: { port: 5688, secretHeader: "X-Webhook-Secret", basic: false },
      api: { port: 5687, prefix: "/broker/api", admins: 1 },
    });
    expect(s["TTN webhook"]![2]).toMatch(/requires header X-Webhook-Secret/);
    expect(s["REST API"]).toHaveLength(2);
    expect(
      labelled({ ...all, webhook: { port: 1, secretHeader: undefined, basic: true } })[
        "TTN webhook"
      ]![2],
    ).toMatch(/Basic/);
  });

  it("names only what runs", () => {
    const { webhook: _w, api: _a, frredDir: _f, webPort: _p, ...mapperOnly } = all;
    const s = labelled({ ...mapperOnly, components: ["mapper"], rabbitmqConnected: false });
    expect(Object.keys(s)).toEqual(["health"]);
    expect(s.health![0]).toContain("RabbitMQ not connected yet");
  });

  it("reads as an aligned block", () => {
    const text = formatStartupSummary(all);
    expect(text).toContain("broker is running: ttn-webhook, mapper, frred, event-relay, api, web");
    expect(text).toContain("  TTN webhook  http://localhost:5688/ttn/webhook/up\n");
    expect(text).toContain("  FRRED files  /srv/databolt/raw_data\n");
    expect(text).toContain("  mode         development");
  });
});
