import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

import type express from "express";

import type { Logger } from "../../core/logger.js";
import type { TtnSettings } from "./settings.js";

export type WebhookAuth = TtnSettings["auth"];

/** True when at least one credential is configured. */
export function authConfigured(auth: WebhookAuth): boolean {
  return auth.secret !== undefined || auth.basic !== undefined;
}

/**
 * The warning logged at every start while the webhook takes requests from anyone, or undefined
 * when credentials are configured. Worded for the operator who reads the log after the fact.
 */
export function openWebhookWarning(
  open: TtnSettings["openWebhook"],
  production: boolean,
): string | undefined {
  const fix =
    "set TTN_WEBHOOK_SECRET or TTN_WEBHOOK_BASIC_USER/TTN_WEBHOOK_BASIC_PASSWORD (doc/sources-ttn.md)";
  switch (open) {
    case undefined:
      return undefined;
    case "chosen":
      return `the TTN webhook is UNAUTHENTICATED by choice (TTN_WEBHOOK_AUTH=none${production ? ", BROKER_ENV=production" : ""}): anyone who can reach it can inject uplinks; ${fix}`;
    case "default":
      return `the TTN webhook is unauthenticated (as in IoTa): anyone who can reach it can inject uplinks; ${fix}. BROKER_ENV=production refuses to start like this`;
  }
}

/**
 * Compares in time independent of where the strings differ and of their lengths: both sides are
 * hashed first, so timingSafeEqual always sees two 32-byte digests.
 */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `Authorization: Basic base64(user:password)` → [user, password], or undefined. */
function basicCredentials(header: string | undefined): [string, string] | undefined {
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!m) {
    return undefined;
  }
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

/**
 * Checks a request's headers against every configured credential (each configured one must
 * pass: a webhook may carry both a custom header and Basic credentials). Returns undefined when
 * the request is allowed, else what is wrong, worded without any secret.
 */
export function checkWebhookAuth(
  headers: IncomingHttpHeaders,
  auth: WebhookAuth,
): string | undefined {
  if (auth.secret !== undefined) {
    const given = single(headers[auth.secretHeader.toLowerCase()]);
    if (given === undefined) {
      return `missing ${auth.secretHeader} header`;
    }
    if (!sameSecret(given, auth.secret)) {
      return `wrong ${auth.secretHeader} header`;
    }
  }
  if (auth.basic !== undefined) {
    const creds = basicCredentials(headers.authorization);
    if (creds === undefined) {
      return "missing Basic credentials";
    }
    // Both comparisons always run, so timing does not tell which part was wrong.
    const userOk = sameSecret(creds[0], auth.basic.user);
    const passwordOk = sameSecret(creds[1], auth.basic.password);
    if (!(userOk && passwordOk)) {
      return "wrong Basic credentials";
    }
  }
  return undefined;
}

/** How often refused requests are summarised in the log, ms (an attacker cannot flood it). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * Express middleware that answers 401 before the body is read, so nothing of a refused request
 * is stored. Refusals are logged at most once per 10 s, with a count, never with credentials.
 */
export function webhookAuthMiddleware(auth: WebhookAuth, logger: Logger): express.RequestHandler {
  let refused = 0;
  let lastLog = 0;
  return (req, res, next) => {
    const problem = checkWebhookAuth(req.headers, auth);
    if (problem === undefined) {
      next();
      return;
    }
    refused++;
    const now = Date.now();
    if (now - lastLog >= REFUSAL_LOG_INTERVAL_MS) {
      logger.warn(
        { refused, problem, remote: req.socket.remoteAddress, path: req.path },
        "webhook request refused: bad or missing credentials",
      );
      refused = 0;
      lastLog = now;
    }
    if (auth.basic !== undefined) {
      res.set("WWW-Authenticate", 'Basic realm="ttn-webhook", charset="UTF-8"');
    }
    // The connection is closed so an unread body does not have to be drained.
    res.set("Connection", "close").status(401).json({ error: "unauthorized", message: problem });
  };
}
