import type { OutgoingMessage } from "../bus/publisher.js";
import type { JsonObject } from "../core/devices.js";
import type { RawRecord } from "../db/repositories/replay-runs.js";

/** What a source makes of a stored raw message today, per device it speaks for. */
export interface ReplayedDevice {
  /** source_ids subset that finds the physical device (jsonb containment). */
  readonly lookup: JsonObject;
  /** The normalised messages once the device uid is known; throws PermanentError for bad content. */
  readonly messages: (pUid: number) => unknown[];
}

export type RawNormalisation =
  | { readonly ok: true; readonly devices: readonly ReplayedDevice[] }
  | { readonly ok: false; readonly reason: string; readonly error: string };

/**
 * Today's decoders and normalisers for stored raw messages, by source; wired by the command that
 * runs the replay. `normalise` never throws for content (a failure is an outcome).
 */
export interface RawNormaliser {
  /** Whether raw messages of this source can be replayed. */
  supports(sourceName: string): boolean;
  normalise(raw: RawRecord): Promise<RawNormalisation>;
  close(): Promise<void>;
}

/** Publishes to the logical exchange, resolving on RabbitMQ's confirms. */
export interface ReplayPublisher {
  publish(messages: readonly OutgoingMessage[]): Promise<void>;
}
