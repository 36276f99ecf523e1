/**
 * PUBACK ordering for one MQTT connection. MQTT 3.1.1 §4.6 asks a receiver to acknowledge QoS 1
 * messages in the order they arrived, while ours finish in any order (batches, retries). Each
 * arrival takes a ticket; settling a ticket releases every acknowledgement that is now at the
 * head of the line. A connection that closes simply drops its queue: the broker redelivers
 * whatever was not acknowledged. Pure.
 */
export interface AckTicket {
  readonly messageId: number;
  /** `ack`: send the PUBACK; `skip`: never acknowledge it on this connection. */
  state: "pending" | "ack" | "skip";
}

export class PubackQueue {
  #line: AckTicket[] = [];

  /** Registers an arrival; its PUBACK waits for every earlier arrival to be settled. */
  take(messageId: number): AckTicket {
    const ticket: AckTicket = { messageId, state: "pending" };
    this.#line.push(ticket);
    return ticket;
  }

  /**
   * Settles a ticket and returns the message ids to acknowledge now, in arrival order. A skipped
   * ticket releases the ones behind it without being acknowledged itself.
   */
  settle(ticket: AckTicket, outcome: "ack" | "skip"): number[] {
    if (ticket.state !== "pending") {
      return [];
    }
    ticket.state = outcome;
    const release: number[] = [];
    while (this.#line.length > 0 && this.#line[0]!.state !== "pending") {
      const head = this.#line.shift()!;
      if (head.state === "ack") {
        release.push(head.messageId);
      }
    }
    return release;
  }

  /** Arrivals not yet acknowledged (settled ones waiting behind a pending one included). */
  get size(): number {
    return this.#line.length;
  }
}
