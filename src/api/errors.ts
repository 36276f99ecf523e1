import type express from "express";
import type { z } from "zod";

import { classifyError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { RegistryError, sqlState } from "../db/repositories/registry-error.js";

/**
 * Errors as the API answers them: IoTa's (FastAPI's) `{"detail": ...}` bodies, a message that
 * names the problem, and never SQL, stack traces or the rejected input itself.
 */

/** One problem in FastAPI/pydantic v1's 422 shape. */
export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** An answer other than success, thrown by handlers and turned into a response by {@link errorHandler}. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, detail: unknown, headers: Record<string, string> = {}) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.headers = headers;
  }
}

export const notFound = (detail = "Not Found") => new ApiError(404, detail);
export const badRequest = (detail: string) => new ApiError(400, detail);
export const forbidden = (detail: string) => new ApiError(403, detail);
export const unprocessable = (issues: ValidationIssue[]) => new ApiError(422, issues);

/** A single 422 issue about one parameter. */
export function invalidParam(where: string, name: string, msg: string): ApiError {
  return unprocessable([{ loc: [where, name], msg, type: "value_error" }]);
}

/** zod's issues in pydantic v1's wording where pydantic had one (clients may match on it). */
export function toValidationIssues(where: string, error: z.ZodError): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const issue of error.issues) {
    const loc = [where, ...issue.path.map((p) => (typeof p === "symbol" ? String(p) : p))];
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        issues.push({
          loc: [...loc, key],
          msg: "extra fields not permitted",
          type: "value_error.extra",
        });
      }
    } else if (issue.code === "invalid_type" && issue.input === undefined) {
      issues.push({ loc, msg: "field required", type: "value_error.missing" });
    } else if (issue.code === "invalid_type") {
      issues.push({ loc, msg: issue.message, type: `type_error.${issue.expected}` });
    } else {
      issues.push({ loc, msg: issue.message, type: `value_error.${issue.code}` });
    }
  }
  return issues;
}

/** Problems PostgreSQL found with a value that got past validation (class 22: data exception). */
function dataExceptionMessage(code: string): string {
  switch (code) {
    case "22021":
    case "22P05":
      return "a text or JSON value contains a character PostgreSQL cannot store (e.g. NUL)";
    case "22003":
      return "a number is out of range";
    case "22007":
    case "22008":
      return "a date-time is invalid or out of range";
    default:
      return "a value was rejected by the database as invalid";
  }
}

function bodyParserError(
  err: { type?: string; status?: number },
  maxBodyBytes: number,
): ApiError | undefined {
  switch (err.type) {
    case "entity.too.large":
      return new ApiError(413, `request body exceeds ${maxBodyBytes} bytes`);
    case "entity.parse.failed":
      return unprocessable([
        { loc: ["body"], msg: "body is not valid JSON", type: "value_error.jsondecode" },
      ]);
    case "encoding.unsupported":
    case "charset.unsupported":
      return new ApiError(415, "unsupported content encoding or charset");
    case "request.aborted":
      return new ApiError(400, "request aborted");
    default:
      return err.status !== undefined && err.status >= 400 && err.status < 500
        ? new ApiError(err.status, "bad request")
        : undefined;
  }
}

/** Content codings the body parser decodes; any other is refused before reading (415). */
const DECODED_ENCODINGS = new Set(["deflate", "gzip", "br", "identity"]);

/**
 * What the body parser's failure to read a body means for the client. A body that does not
 * decode as its Content-Encoding reaches us as zlib's own error (no body-parser `type`): 400.
 */
export function bodyReadError(err: unknown, contentEncoding: string | undefined): unknown {
  const e = err as { type?: unknown; status?: unknown } | null;
  if (typeof e === "object" && e !== null && e.type === undefined && e.status === 400) {
    const coding = (contentEncoding ?? "").trim().toLowerCase();
    const named = DECODED_ENCODINGS.has(coding)
      ? `Content-Encoding: ${coding}`
      : "its Content-Encoding";
    return new ApiError(400, `the body cannot be decoded as ${named}`);
  }
  return err;
}

/** Maps anything a handler threw to an ApiError, or undefined for a failure of our own (500). */
export function toApiError(err: unknown, maxBodyBytes: number): ApiError | undefined {
  if (err instanceof ApiError) {
    return err;
  }
  if (err instanceof URIError) {
    // The router could not percent-decode a path parameter (`%ff`); its message quotes it.
    return new ApiError(400, "the path has a malformed percent-escape");
  }
  if (err instanceof RegistryError) {
    const status = { not_found: 404, conflict: 409, invalid: 400 }[err.code];
    return new ApiError(status, err.message);
  }
  if (typeof err === "object" && err !== null && "type" in err && "status" in err) {
    const parsed = bodyParserError(err as { type?: string; status?: number }, maxBodyBytes);
    if (parsed) {
      return parsed;
    }
  }
  const code = sqlState(err);
  if (code?.startsWith("22")) {
    return new ApiError(422, dataExceptionMessage(code));
  }
  if (code?.startsWith("23")) {
    return new ApiError(409, "the change conflicts with stored data");
  }
  if (classifyError(err).kind === "transient") {
    return new ApiError(503, "the database is unavailable; retry later", { "Retry-After": "5" });
  }
  return undefined;
}

/** The API's last error handler: a clean JSON answer, details only in the log. */
export function errorHandler(logger: Logger, maxBodyBytes: number): express.ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (res.headersSent) {
      // A streamed response failed part-way: all that can be done is to cut it short.
      logger.warn({ err, path: req.path }, "response failed after it started");
      res.destroy();
      return;
    }
    const answer = toApiError(err, maxBodyBytes);
    if (answer === undefined) {
      logger.error({ err, method: req.method, path: req.path }, "request failed");
      res.status(500).json({ detail: "Internal Server Error" });
      return;
    }
    if (answer.status >= 500) {
      logger.warn({ err, method: req.method, path: req.path }, "request failed transiently");
    }
    res.status(answer.status).set(answer.headers).json({ detail: answer.detail });
  };
}
