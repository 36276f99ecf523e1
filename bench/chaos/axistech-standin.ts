import { DEFAULT_STATION_ID } from "../../src/sources/axistech/normalise.js";
import {
  VendorServer,
  type Answer,
  type SeenRequest,
} from "../../test/fixtures/pollers/vendor-server.js";

/**
 * A stand-in for the AxisTech data exchange (`GET /?token&startDate&endDate`), a real HTTP server
 * whose weather records appear one by one while the chaos run's load lasts, as a vendor's
 * records do, in time order per station. It answers the records inside the window asked for, so
 * the poller re-reads from its saved position; it can answer 503 for a while (vendor down).
 */
export class AxisTechStandIn {
  /** Every record made available, in the order it appeared. */
  readonly records: { code: string; time: string; temperature_avg: number }[] = [];
  /** Requests answered 503 while down. */
  refused = 0;
  down = false;
  readonly #token: string;
  #server: VendorServer | undefined;

  constructor(token: string) {
    this.#token = token;
  }

  async start(): Promise<string> {
    this.#server = await VendorServer.start((req) => this.#answer(req));
    return this.#server.url;
  }

  add(record: { code: string; time: string; temperature_avg: number }): void {
    this.records.push(record);
  }

  #answer(req: SeenRequest): Answer {
    if (this.down) {
      this.refused++;
      return { status: 503, body: { error: "maintenance" } };
    }
    if (req.query.get("token") !== this.#token) {
      return { status: 403, body: { error: "bad token" } };
    }
    const from = Date.parse(req.query.get("startDate") ?? "");
    const to = Date.parse(req.query.get("endDate") ?? "");
    const weather = this.records.filter((r) => {
      const t = Date.parse(r.time);
      return t >= from && t <= to;
    });
    return { body: { status: "ok", data: { [DEFAULT_STATION_ID]: { name: "AWS", weather } } } };
  }

  async stop(): Promise<void> {
    await this.#server?.close();
  }
}
