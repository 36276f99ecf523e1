/**
 * What the FRRED writer's main thread (frred-threads.ts) and a file thread (frred-thread.ts)
 * exchange, and the on-disk constants both sides need.
 */

/** Permissions of the message directories (IoTa's umask 0 made them world-writable). */
export const DIRECTORY_MODE = 0o755;
/** Permissions of the message files. */
export const FILE_MODE = 0o644;
/** Prefix of the temporary directories a write builds before renaming them into place. */
export const TEMPORARY_PREFIX = ".tmp-";

/** `written`: the directory was created now; `exists`: it was already there (redelivery, replay). */
export type WriteResult = "written" | "exists";

/** One message directory to write. */
export interface FileEntry {
  /** The directory's name under the base directory. */
  readonly name: string;
  /** The name of the one file inside it. */
  readonly file: string;
  /** The file's content. */
  readonly content: string;
}

/** A share of one write call: a thread writes its entries one after another. */
export interface FileJob {
  readonly id: number;
  /** The base directory (absolute). */
  readonly dir: string;
  readonly entries: readonly FileEntry[];
  /**
   * Whether the thread fsyncs the base directory after the last entry (when the job is a whole
   * write call, so every rename of the call is before it): saves the main thread three file
   * system round trips per call.
   */
  readonly syncBase: boolean;
}

/** A thread's answer: one result per entry, or the results up to the entry that failed. */
export type FileReply =
  | { readonly id: number; readonly results: WriteResult[] }
  | {
      readonly id: number;
      readonly results: WriteResult[];
      readonly failure: {
        /** The message directory whose write failed. */
        readonly target: string;
        readonly message: string;
        readonly code: string | undefined;
      };
    };
