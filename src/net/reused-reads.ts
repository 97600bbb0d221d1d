/**
 * Socket reads into one buffer per connection, reused from read to read (net.Socket's `onread`
 * option), instead of the Buffer Node allocates for every read. In a relay that allocation, and
 * the garbage collection it brings, is most of Node's own cost per read (issue 21: the
 * node-relay-onread bench target against node-relay).
 *
 * A read's bytes are only valid until the next read: whoever takes them answers whether anything
 * still holds a view of them (a write the kernel did not take at once, a message held back, a
 * half-assembled one), and the next read then goes to a fresh buffer. A wrong "nothing" would let
 * the next read overwrite bytes not yet sent, so the takers answer conservatively.
 */
import type * as net from 'node:net';

/** What one read may bring at most (Node's own default read size). */
export const READ_BUFFER_BYTES = 64 * 1024;

/**
 * onread options for a socket whose reads go to `take`. take(chunk) returns true when something
 * still holds a view of chunk after the call: the next read then goes to a new buffer.
 */
export function reusedReads(take: (chunk: Buffer) => boolean): net.OnReadOpts {
  let buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  return {
    // Node asks for the buffer of the next read after every callback (a function: it may change).
    buffer: () => buffer,
    callback(n: number, buf: Uint8Array): boolean {
      if (take((buf as Buffer).subarray(0, n))) buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      // Pausing is the taker's (socket.pause() stops reading an onread socket too).
      return true;
    },
  };
}
