import type { Server } from "node:http";

import type express from "express";

/** Starts `app` on `port` (0 = any free port); resolves with the server once it listens. */
export function listen(app: express.Express, port: number, host?: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host ?? "0.0.0.0", (err?: Error) => {
      if (err) {
        reject(err);
      } else {
        resolve(server);
      }
    });
    server.once("error", reject);
    // Slow clients cannot hold a stop open for long.
    server.headersTimeout = 15_000;
    server.requestTimeout = 30_000;
  });
}

/**
 * Stops accepting connections and closes idle keep-alive ones; in-flight requests get
 * `graceMs` to finish, then every connection is closed (a client that got no answer retries, and
 * every front end is idempotent). The grace is well under a stop step's 5 s limit
 * (core/lifecycle.ts), so the rest of a component's stop still has time after it.
 */
export function closeServer(server: Server, graceMs = 3_000): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), graceMs).unref();
  });
}

/** The port a listening server got (useful when started on port 0). */
export function portOf(server: Server): number {
  const address = server.address();
  return typeof address === "object" && address ? address.port : 0;
}

/**
 * A `*_TRUST_PROXY` setting as express's `trust proxy` takes it: `true`/`false`, a hop count, or
 * the addresses and subnets as written (e.g. `loopback, 10.0.0.0/8`).
 */
export function trustProxySetting(value: string): boolean | number | string {
  const trust = value.trim().toLowerCase();
  if (trust === "false" || trust === "true") {
    return trust === "true";
  }
  return /^\d+$/.test(trust) ? Number(trust) : value;
}
