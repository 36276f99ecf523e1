import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";

/**
 * A stand-in for an InfluxDB 2.x write endpoint (`POST /api/v2/write`), a real HTTP server that
 * records every line it accepted, in order, and can be taken down (every connection reset) for a
 * while: the "destination down for minutes" of the chaos run.
 */
export class InfluxStandIn {
  /** Lines accepted (answered 204), in arrival order; a rewrite appears again. */
  readonly lines: { line: string; at: number }[] = [];
  /** Requests refused while down. */
  refused = 0;
  down = false;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #token: string;
  readonly #clock: () => number;

  constructor(token: string, clock: () => number) {
    this.#token = token;
    this.#clock = clock;
    this.#server = createServer((req, res) => {
      if (this.down) {
        this.refused++;
        req.socket.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.method !== "POST" || !req.url?.startsWith("/api/v2/write")) {
          res.writeHead(404).end();
          return;
        }
        if (req.headers.authorization !== `Token ${this.#token}`) {
          res.writeHead(401).end();
          return;
        }
        const at = this.#clock();
        for (const line of Buffer.concat(chunks).toString("utf8").split("\n")) {
          if (line.trim() !== "") {
            this.lines.push({ line, at });
          }
        }
        res.writeHead(204).end();
      });
    });
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    const address = this.#server.address();
    return `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  }

  /** Resets every open connection and refuses new requests until {@link setUp}. */
  setDown(): void {
    this.down = true;
    for (const s of this.#sockets) {
      s.destroy();
    }
  }

  setUp(): void {
    this.down = false;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) {
      s.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
