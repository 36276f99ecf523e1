import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, chmod, lstat, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";

import { TransientError } from "../../core/errors.js";
import type { NormalisedMessage } from "../../core/message.js";

/**
 * The file-system side of the FRRED (DataBolt) writer: one directory per message, written
 * atomically and idempotently. Knows nothing about RabbitMQ or the database.
 *
 * Layout, under the base directory:
 *
 * ```
 * <broker_correlation_id>_<first 8 hex chars of the message key>/
 *     <broker_correlation_id>.json      the message as one JSON line, no trailing newline
 * ```
 */

/** Permissions of the message directories (IoTa's umask 0 made them world-writable). */
export const DIRECTORY_MODE = 0o755;
/** Permissions of the message files. */
export const FILE_MODE = 0o644;
/** Prefix of the temporary directories a write builds before renaming them into place. */
export const TEMPORARY_PREFIX = ".tmp-";

/** What the writer needs from one message. */
export interface FrredItem {
  readonly message: NormalisedMessage;
  /** The message's idempotency key ({@link messageKey}), UUID-shaped. */
  readonly key: string;
}

/** `written`: the directory was created now; `exists`: it was already there (redelivery, replay). */
export type WriteResult = "written" | "exists";

export type DirectoryState =
  { readonly usable: true } | { readonly usable: false; readonly problem: string };

export interface FrredFilesOptions {
  /** The base directory (FRRED_DIR). It is never created: it must exist and be writable. */
  dir: string;
  /** Age after which a leftover temporary directory is removed by {@link FrredFiles.removeStaleTemporaries}, in ms. Default 1 hour. */
  staleTemporaryMs?: number;
  /** Message directories written in parallel within one call of {@link FrredFiles.write}. Default 16. */
  concurrency?: number;
}

/** Name of a message's directory: several messages may share a correlation id, so the key is in it. */
export function messageDirectoryName(item: FrredItem): string {
  return `${item.message.broker_correlation_id}_${item.key.replace(/-/g, "").slice(0, 8)}`;
}

/** Name of the one file inside a message's directory. */
export function messageFileName(item: FrredItem): string {
  return `${item.message.broker_correlation_id}.json`;
}

/** The file's content: the whole message as received, on one line, without a trailing newline. */
export function messageFileContent(item: FrredItem): string {
  return JSON.stringify(item.message);
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Any file-system failure here is about the directory (missing, full, read-only), never the content. */
function transient(what: string, err: unknown): TransientError {
  if (err instanceof TransientError) {
    return err;
  }
  return new TransientError(`${what}: ${errorText(err)}`, { cause: err });
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (codeOf(err) === "ENOENT") {
      return false;
    }
    throw err;
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  async function worker(): Promise<void> {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(limit, items.length) }, () => worker()),
  );
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (rejected) {
    throw rejected.reason;
  }
  return results;
}

/**
 * Writes message directories under one base directory.
 *
 * Atomic: each message's file is written and fsynced inside a temporary sibling directory
 * (`.tmp-<name>-<random>`), which is then renamed to its final name; the base directory is
 * fsynced before {@link write} resolves. A reader never sees a half-written directory.
 *
 * Idempotent: a message whose directory already exists is not rewritten and counts as written.
 *
 * Every file-system failure is a {@link TransientError}: the caller keeps the messages and
 * retries later. The base directory is never created (a missing mount must not silently fill
 * the root file system).
 */
export class FrredFiles {
  readonly dir: string;
  readonly #staleMs: number;
  readonly #concurrency: number;

  constructor(options: FrredFilesOptions) {
    this.dir = options.dir;
    this.#staleMs = options.staleTemporaryMs ?? 3_600_000;
    this.#concurrency = Math.max(1, options.concurrency ?? 16);
  }

  /** Whether the base directory exists, is a directory, and this process may create entries in it. */
  async checkDirectory(): Promise<DirectoryState> {
    try {
      const info = await stat(this.dir);
      if (!info.isDirectory()) {
        return { usable: false, problem: `FRRED directory ${this.dir} is not a directory` };
      }
      await access(this.dir, constants.W_OK | constants.X_OK);
      return { usable: true };
    } catch (err) {
      const code = codeOf(err);
      if (code === "ENOENT") {
        return {
          usable: false,
          problem: `FRRED directory ${this.dir} does not exist (is the DataBolt share mounted?); it is not created automatically`,
        };
      }
      return {
        usable: false,
        problem: `FRRED directory ${this.dir} is not usable: ${errorText(err)}`,
      };
    }
  }

  /**
   * Writes one directory per item (several items with the same directory name are written once)
   * and returns, per item, whether it was written now or was already there. Throws
   * {@link TransientError} if the base directory is unusable or any write fails; directories
   * finished before the failure stay, and count as `exists` on the retry.
   */
  async write(items: readonly FrredItem[]): Promise<WriteResult[]> {
    if (items.length === 0) {
      return [];
    }
    const state = await this.checkDirectory();
    if (!state.usable) {
      throw new TransientError(state.problem);
    }
    const byName = new Map<string, FrredItem>();
    for (const item of items) {
      const name = messageDirectoryName(item);
      if (!byName.has(name)) {
        byName.set(name, item);
      }
    }
    const names = [...byName.keys()];
    const results = await mapLimited(names, this.#concurrency, (name) =>
      this.#writeOne(name, byName.get(name)!),
    );
    const resultByName = new Map(names.map((name, i) => [name, results[i]!]));
    if (results.includes("written")) {
      try {
        // Makes the renames themselves durable before the caller acknowledges anything.
        await syncDirectory(this.dir);
      } catch (err) {
        throw transient(`cannot fsync FRRED directory ${this.dir}`, err);
      }
    }
    return items.map((item) => resultByName.get(messageDirectoryName(item))!);
  }

  async #writeOne(name: string, item: FrredItem): Promise<WriteResult> {
    const target = join(this.dir, name);
    let temporary: string | undefined;
    try {
      if (await exists(target)) {
        return "exists";
      }
      temporary = join(this.dir, `${TEMPORARY_PREFIX}${name}-${randomBytes(6).toString("hex")}`);
      await mkdir(temporary, { mode: DIRECTORY_MODE });
      // mkdir and open apply the process umask; set the modes explicitly.
      await chmod(temporary, DIRECTORY_MODE);
      const file = await open(join(temporary, messageFileName(item)), "wx", FILE_MODE);
      try {
        await file.chmod(FILE_MODE);
        await file.writeFile(messageFileContent(item), "utf8");
        await file.sync();
      } finally {
        await file.close();
      }
      await syncDirectory(temporary);
      try {
        await rename(temporary, target);
      } catch (err) {
        const code = codeOf(err);
        if (code === "ENOTEMPTY" || code === "EEXIST") {
          // Another copy of this writer finished the same message first.
          await rm(temporary, { recursive: true, force: true });
          return "exists";
        }
        throw err;
      }
      return "written";
    } catch (err) {
      if (temporary !== undefined) {
        await rm(temporary, { recursive: true, force: true }).catch(() => undefined);
      }
      throw transient(`cannot write FRRED message directory ${target}`, err);
    }
  }

  /**
   * Removes temporary directories older than `staleTemporaryMs` (left by a crash between mkdir
   * and rename). Returns how many were removed. Throws {@link TransientError} if the base
   * directory cannot be read.
   */
  async removeStaleTemporaries(now = Date.now()): Promise<number> {
    let entries;
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch (err) {
      throw transient(`cannot list FRRED directory ${this.dir}`, err);
    }
    let removed = 0;
    for (const entry of entries) {
      if (!entry.name.startsWith(TEMPORARY_PREFIX) || !entry.isDirectory()) {
        continue;
      }
      const path = join(this.dir, entry.name);
      try {
        const info = await lstat(path);
        if (now - info.mtimeMs > this.#staleMs) {
          await rm(path, { recursive: true, force: true });
          removed++;
        }
      } catch {
        // Gone already, or not removable now: the next start tries again.
      }
    }
    return removed;
  }
}
