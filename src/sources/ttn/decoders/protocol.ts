/** Messages between the decoder pool (host) and a decoder worker thread. */

/** Why a decoding produced no usable result; each becomes the dead-letter reason as it is. */
export type DecoderFailureReason =
  /** No `uplink/<name>.js` (or an unusable name). */
  | "decoder_not_found"
  /** The file does not compile, throws while loading, or defines no decodeUplink. */
  | "decoder_invalid"
  /** decodeUplink threw, returned something that is not `{data, …}`, or only errors. */
  | "decoder_failed"
  /** decodeUplink ran past TTN_DECODER_TIMEOUT_MS. */
  | "decoder_timeout"
  /** The decoder ran out of its TTN_DECODER_MEMORY_MB of memory. */
  | "decoder_memory"
  /** The decoder's interpreter or its worker died for another reason, or could not start. */
  | "decoder_crashed";

/** TTN's `decodeUplink` input, as JSON (recvTime becomes a Date inside the sandbox). */
export interface DecoderInput {
  readonly bytes: number[];
  readonly fPort: number;
  readonly recvTime: string;
}

export interface DecodeRequest {
  readonly id: number;
  /** Absolute path of the decoder file. */
  readonly file: string;
  readonly input: DecoderInput;
  /** Time limit of one decodeUplink call (and of loading the file), ms. */
  readonly timeoutMs: number;
}

export type DecodeReply =
  | {
      readonly id: number;
      readonly ok: true;
      /** decodeUplink's return value as JSON text (non-finite numbers left out). */
      readonly output: string;
      /** Keys whose value was NaN or ±Infinity and was therefore left out. */
      readonly dropped: readonly string[];
    }
  | {
      readonly id: number;
      readonly ok: false;
      readonly reason: DecoderFailureReason;
      readonly error: string;
    };

/** Sent once by a worker when it can take requests (the pool's watchdog starts only then). */
export interface WorkerReady {
  readonly ready: true;
}

/** Settings every worker gets at its start. */
export interface WorkerData {
  /** Memory each decoder may allocate beyond the interpreter's fixed base, MB. */
  readonly memoryMb: number;
}
