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
    server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  });
}

/**
 * How long a server keeps an idle keep-alive connection, ms (announced as `Keep-Alive:
 * timeout=95`). Node's default, 5 s, is shorter than most clients keep theirs: a client then
 * reuses a connection just as the server closes it, and a POST on it fails with ECONNRESET.
 * The Things Stack is a Go program, whose http.Transport keeps idle connections 90 s and does
 * not retry a POST on a reused connection; browsers and proxies keep theirs shorter than that
 * (nginx upstream and AWS load balancers 60 s), so every server here keeps them longer than
 * 90 s and the client always closes first. Idle connections cost a descriptor each, and a stop
 * closes them at once (closeServer).
 *
 * `headersTimeout` is not raised with it: on Node 20 it runs from a request's first byte, not
 * while a connection is idle (checked: a connection idle longer than `headersTimeout` serves its
 * next request), and Node's one rule is `headersTimeout` <= `requestTimeout`, which holds.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 95_000;

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
