import { constants } from "node:fs";
import { access, lstat, open, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";

import { TransientError } from "../../core/errors.js";
import type { NormalisedMessage } from "../../core/message.js";
import { TEMPORARY_PREFIX, type FileEntry, type WriteResult } from "./frred-thread-protocol.js";
import { FileThreads, FileWriteError } from "./frred-threads.js";

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

export {
  DIRECTORY_MODE,
  FILE_MODE,
  TEMPORARY_PREFIX,
  type WriteResult,
} from "./frred-thread-protocol.js";

/** What the writer needs from one message. */
export interface FrredItem {
  readonly message: NormalisedMessage;
  /** The message's idempotency key ({@link messageKey}), UUID-shaped. */
  readonly key: string;
}

export type DirectoryState =
  { readonly usable: true } | { readonly usable: false; readonly problem: string };

export interface FrredFilesOptions {
  /** The base directory (FRRED_DIR). It is never created: it must exist and be writable. */
  dir: string;
  /** Age after which a leftover temporary directory is removed by {@link FrredFiles.removeStaleTemporaries}, in ms. Default 1 hour. */
  staleTemporaryMs?: number;
  /**
   * File threads (frred-thread.ts) writing message directories at the same time; a call of
   * {@link FrredFiles.write} shares its directories among them, each thread writing its share
   * one directory after another, so up to this many fsyncs wait at once. Started when first
   * needed; about 8 MB of memory each. Default 4: on a 2-vCPU machine with a local ext4, 2, 8
   * and 16 were no faster, and more threads cost more CPU per message (doc/benchmarks.md
   * § FRRED writer alone).
   */
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

/**
 * Writes message directories under one base directory.
 *
 * Atomic: each message's file is written and fsynced inside a temporary sibling directory
 * (`.tmp-<name>-<unique>`), which is fsynced and then renamed to its final name; the base
 * directory is fsynced once per {@link write}, after every rename and before it resolves. A
 * reader never sees a half-written directory.
 *
 * Idempotent: a message whose directory already exists is not rewritten and counts as written.
 *
 * Every file-system failure is a {@link TransientError}: the caller keeps the messages and
 * retries later. The base directory is never created (a missing mount must not silently fill
 * the root file system). The directories are written by file threads (frred-threads.ts);
 * {@link close} stops them.
 */
export class FrredFiles {
  readonly dir: string;
  readonly #staleMs: number;
  readonly #threads: FileThreads;

  constructor(options: FrredFilesOptions) {
    this.dir = options.dir;
    this.#staleMs = options.staleTemporaryMs ?? 3_600_000;
    this.#threads = new FileThreads(options.concurrency ?? 4);
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
    // No check of the base directory first (two more file-system round trips per batch): a
    // missing, non-directory or unwritable base makes the thread's mkdir fail, transiently, and
    // the writer then checks it for readiness and the log (frred-writer.ts).
    const byName = new Map<string, FileEntry>();
    for (const item of items) {
      const name = messageDirectoryName(item);
      if (!byName.has(name)) {
        byName.set(name, {
          name,
          file: messageFileName(item),
          content: messageFileContent(item),
        });
      }
    }
    const names = [...byName.keys()];
    let results: WriteResult[];
    let baseSynced: boolean;
    try {
      ({ results, baseSynced } = await this.#threads.write(this.dir, [...byName.values()]));
    } catch (err) {
      // A thread that died or could not start is as transient as a full disk.
      const target = err instanceof FileWriteError ? err.target : this.dir;
      throw transient(`cannot write FRRED message directory ${target}`, err);
    }
    try {
      // Makes the renames durable before the caller acknowledges anything. Also when every
      // directory was there already: one may be the rename of a call that failed before its
      // fsync, or of another copy that has not reached its own yet. A call written by one
      // thread had it done there, after its last rename.
      if (!baseSynced) {
        await syncDirectory(this.dir);
      }
    } catch (err) {
      throw transient(`cannot fsync FRRED directory ${this.dir}`, err);
    }
    const resultByName = new Map(names.map((name, i) => [name, results[i]!]));
    return items.map((item) => resultByName.get(messageDirectoryName(item))!);
  }

  /** Stops the file threads; a write still under way fails (transiently). */
  async close(): Promise<void> {
    await this.#threads.close();
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
