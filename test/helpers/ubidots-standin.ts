import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A stand-in for the Ubidots API, a real HTTP server: `POST /api/v1.6/devices/<label>/` (creates
 * unknown devices, stores dots by variable and timestamp, answers per-dot status codes),
 * `PATCH` and `GET /api/v2.0/devices/~<label>`. It checks `X-Auth-Token`, enforces a request
 * rate per token (a bucket of `rate` tokens refilled at `rate` per second; 429 with
 * Retry-After beyond it) and the 10,000-byte body limit (413), and can be told to fail: hang
 * without storing (a timeout), answer 502, reset the connection, refuse the token, or be down.
 */

export interface StoredDot {
  readonly value: number;
  readonly timestamp: number;
  readonly context: Record<string, unknown> | undefined;
}

export type Fault = "timeout" | "502" | "reset" | "429";

export interface StandInOptions {
  readonly token: string;
  /** Requests per second allowed. Default 4. */
  readonly rate?: number;
  readonly maxBodyBytes?: number;
}

interface Device {
  readonly label: string;
  readonly id: string;
  readonly variables: Map<string, Map<number, StoredDot>>;
  record: Record<string, unknown>;
}

export class UbidotsStandIn {
  readonly devices = new Map<string, Device>();
  /** How many times each label was created (must stay 1). */
  readonly creations = new Map<string, number>();
  /** Dots written over an existing (variable, timestamp). */
  overwrites = 0;
  /** Overwrites whose value or context differed from the dot already there. */
  conflictingOverwrites = 0;
  /** Requests answered 429 because the rate was exceeded (not injected). */
  rateLimited = 0;
  /** Bodies refused for size. */
  tooLarge = 0;
  requests = 0;
  posts = 0;
  /** Answer 401 to everything while set. */
  refuseToken = false;
  /** Reset every connection while set. */
  down = false;
  /** Answer 429 (Retry-After: 1) to everything while set. */
  storm = false;
  /** The next requests of these kinds fail this way, in order. */
  readonly faults: Fault[] = [];
  /** Fails the next n GETs of device records with 500. */
  failGets = 0;
  /**
   * Every dot stored (answered 201), in arrival order, a dot written over again included: what a
   * run reconciles by the `broker_correlation_id` of the dot's context.
   */
  readonly arrivals: {
    label: string;
    variable: string;
    timestamp: number;
    value: number;
    correlationId: string | undefined;
    at: number;
  }[] = [];
  /** Every (method, path) received, in order. */
  readonly log: { method: string; path: string; at: number }[] = [];

  readonly #o: Required<StandInOptions>;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #tokens: number;
  #refilledAt = performance.now();

  constructor(options: StandInOptions) {
    this.#o = { rate: 4, maxBodyBytes: 10_000, ...options };
    this.#tokens = this.#o.rate;
    this.#server = createServer((req, res) => {
      void this.#handle(req, res);
    });
    this.#server.on("connection", (socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) {
      s.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Every stored dot of a device's variable, by timestamp. */
  dots(label: string, variable: string): Map<number, StoredDot> {
    return this.devices.get(label)?.variables.get(variable) ?? new Map();
  }

  totalDots(): number {
    let n = 0;
    for (const d of this.devices.values()) {
      for (const v of d.variables.values()) {
        n += v.size;
      }
    }
    return n;
  }

  #takeToken(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(
      this.#o.rate,
      this.#tokens + ((now - this.#refilledAt) / 1000) * this.#o.rate,
    );
    this.#refilledAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    return false;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) {
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    const path = (req.url ?? "").split("?")[0]!;
    this.requests++;
    this.log.push({ method: req.method ?? "", path, at: Date.now() });
    if (this.down) {
      req.socket.destroy();
      return;
    }
    const fault = this.faults.shift();
    if (fault === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault === "timeout") {
      return; // never answers, stores nothing; the client gives up
    }
    if (fault === "502") {
      return send(res, 502, { error: "bad gateway" });
    }
    if (fault === "429" || this.storm) {
      return send(res, 429, { detail: "rate limited" }, { "Retry-After": "1" });
    }
    if (req.headers["x-auth-token"] !== this.#o.token || this.refuseToken) {
      return send(res, 401, { detail: "Authentication credentials were not provided." });
    }
    if (!this.#takeToken()) {
      this.rateLimited++;
      return send(res, 429, { detail: "rate limited" }, { "Retry-After": "1" });
    }
    if (body.length > this.#o.maxBodyBytes) {
      this.tooLarge++;
      return send(res, 413, { detail: "request too large" });
    }
    const post = /^\/api\/v1\.6\/devices\/([^/]+)\/?$/.exec(path);
    if (post && req.method === "POST") {
      this.posts++;
      return this.#post(decodeURIComponent(post[1]!), body, res);
    }
    const v2 = /^\/api\/v2\.0\/devices\/~([^/]+)\/?$/.exec(path);
    if (v2) {
      const device = this.devices.get(decodeURIComponent(v2[1]!));
      if (!device) {
        return send(res, 404, { detail: "Not found." });
      }
      if (req.method === "PATCH") {
        const patch = JSON.parse(body.toString()) as Record<string, unknown>;
        device.record = {
          ...device.record,
          ...patch,
          properties: {
            ...(device.record.properties as object),
            ...(patch.properties as object | undefined),
          },
        };
        return send(res, 200, device.record);
      }
      if (req.method === "GET") {
        if (this.failGets > 0) {
          this.failGets--;
          return send(res, 500, { detail: "server error" });
        }
        return send(res, 200, device.record);
      }
    }
    return send(res, 405, { detail: "method not allowed" });
  }

  #post(label: string, body: Buffer, res: ServerResponse): void {
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(body.toString()) as Record<string, unknown>;
    } catch {
      return send(res, 400, { detail: "bad JSON" });
    }
    let device = this.devices.get(label);
    if (!device) {
      const id = `id${this.devices.size + 1}`;
      device = {
        label,
        id,
        variables: new Map(),
        record: { id, label, name: label, url: `/api/v2.0/devices/${id}`, properties: {} },
      };
      this.devices.set(label, device);
      this.creations.set(label, (this.creations.get(label) ?? 0) + 1);
    }
    const answer: Record<string, { status_code: number }[]> = {};
    for (const [variable, raw] of Object.entries(payload)) {
      const list = Array.isArray(raw) ? raw : [raw];
      const stored = device.variables.get(variable) ?? new Map<number, StoredDot>();
      device.variables.set(variable, stored);
      answer[variable] = list.map((entry: unknown) => {
        const dot = (typeof entry === "number" ? { value: entry } : entry) as Partial<StoredDot>;
        if (typeof dot.value !== "number") {
          return { status_code: 400 };
        }
        const timestamp = typeof dot.timestamp === "number" ? dot.timestamp : Date.now();
        const before = stored.get(timestamp);
        if (before) {
          this.overwrites++;
          if (
            before.value !== dot.value ||
            JSON.stringify(before.context) !== JSON.stringify(dot.context)
          ) {
            this.conflictingOverwrites++;
          }
        }
        // Same variable, same timestamp: one dot, the newer value.
        stored.set(timestamp, { value: dot.value, timestamp, context: dot.context });
        const cid = dot.context?.broker_correlation_id;
        this.arrivals.push({
          label,
          variable,
          timestamp,
          value: dot.value,
          correlationId: typeof cid === "string" ? cid : undefined,
          at: Date.now(),
        });
        return { status_code: 201 };
      });
    }
    send(res, 200, answer);
  }
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}
