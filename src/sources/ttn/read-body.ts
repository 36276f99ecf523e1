import express from "express";

/** `res.locals` key set by {@link readBody} when the body was larger than allowed. */
export const TOO_LARGE = "bodyTooLarge";

/**
 * Reads the request body into `req.body` (a Buffer). A body larger than `maxBytes` is not refused
 * unread: its first `maxBytes` bytes are kept and `res.locals[TOO_LARGE]` is set, so the handler
 * stores them raw and dead-letters them before answering 413; the rest is read and discarded.
 * Compressed bodies go through express.raw, which inflates them and refuses an oversized one
 * with a bare 413 (nothing stored).
 */
export function readBody(maxBytes: number): express.RequestHandler {
  const inflating = express.raw({ type: () => true, limit: maxBytes });
  return (req, res, next) => {
    const encoding = (req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
    if (encoding !== "identity") {
      void inflating(req, res, next);
      return;
    }
    const chunks: Buffer[] = [];
    let kept = 0;
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) {
        return;
      }
      done = true;
      req.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      if (err !== undefined) {
        next(err);
        return;
      }
      req.body = Buffer.concat(chunks, kept);
      next();
    };
    const onData = (chunk: Buffer): void => {
      const room = maxBytes - kept;
      if (chunk.length > room) {
        chunks.push(chunk.subarray(0, room));
        kept = maxBytes;
        res.locals[TOO_LARGE] = true;
        req.resume(); // the rest flows on, unread
        finish();
        return;
      }
      chunks.push(chunk);
      kept += chunk.length;
    };
    const onEnd = (): void => finish();
    const onError = (err: Error): void => finish(Object.assign(err, { status: 400 }));
    const onClose = (): void =>
      finish(Object.assign(new Error("request aborted"), { status: 400 }));
    req.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  };
}
