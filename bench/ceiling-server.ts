/**
 * The webhook's ceiling on this machine: the same HTTP stack (express, the webhook's body
 * reader) and the same JSON parse and checks (decodeJsonText), answering 204 with no database or
 * broker behind it. Run as its own process by bench/ingest.ts; prints "ceiling ready <port>".
 */
import express from "express";

import { listen, portOf } from "../src/runtime/http.js";
import { decodeJsonText } from "../src/sources/raw-copy.js";
import { readBody } from "../src/sources/ttn/read-body.js";

const app = express();
app.disable("x-powered-by");
app.post("/ttn/webhook/up", readBody(1_000_000), (req, res) => {
  const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const decoded = decodeJsonText(bytes.toString("utf8"), "body");
  res.status(decoded.ok ? 204 : 400).end();
});
const server = await listen(app, Number(process.env.CEILING_PORT ?? 0), "127.0.0.1");
console.log(`ceiling ready ${portOf(server)}`);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
