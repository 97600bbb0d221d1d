/**
 * Client messages that arrive while a session waits for the cache (a worker thread's verdict,
 * another client's flight, the probe of its settings): copied out of their socket chunk and kept
 * in order, then taken one by one when the wait is over, as if they had just arrived.
 */
import { ProtocolError } from '../protocol/messages';
import { decodeClientMessage, type ClientMessage } from '../protocol/client-messages';

/** A kept message: a copy, whole or a streamed piece. */
export interface Deferred {
  type: number;
  buf: Buffer;
  whole: boolean;
}

export class Backlog {
  private items: Deferred[] = [];
  /** The kept messages are being taken (take() runs). */
  private taking = false;

  /** A new message must wait too: the session waits, or messages kept earlier are still to be taken. */
  holds(waiting: boolean): boolean {
    return waiting || (this.items.length > 0 && !this.taking);
  }

  keep(type: number, buf: Buffer, start: number, end: number, whole: boolean): void {
    this.items.push({ type, buf: Buffer.from(buf.subarray(start, end)), whole });
  }

  /**
   * Take the kept messages in order, each to `each`, while `go()` allows (the session may wait
   * again, or close, on the way). False when called again from inside `each`: the outer call goes on.
   */
  take(go: () => boolean, each: (d: Deferred) => void): boolean {
    if (this.taking) return false;
    this.taking = true;
    while (this.items.length > 0 && go()) each(this.items.shift()!);
    this.taking = false;
    return true;
  }

  /** The session closes: the whole messages still kept, decoded (their log lines), malformed ones left out. */
  abandon(): { type: number; msg: ClientMessage | null }[] {
    const out: { type: number; msg: ClientMessage | null }[] = [];
    for (const d of this.items) {
      if (!d.whole) continue;
      try {
        out.push({ type: d.type, msg: decodeClientMessage(d.type, d.buf, 0, d.buf.length) });
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
      }
    }
    this.items = [];
    return out;
  }
}
