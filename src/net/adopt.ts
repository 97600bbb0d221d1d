/**
 * Read an accepted connection with net.Socket's `onread` option (a buffer the caller owns, no
 * Readable stream between the kernel and the callback).
 *
 * Node takes `onread` only in the net.Socket constructor and net.connect(), not in
 * net.createServer() (nodejs/node#53792). The listener therefore accepts paused
 * (pauseOnConnect: nothing has been read yet), and the accepted socket's handle is moved into a
 * new Socket constructed with the option: the same file descriptor, now owned by the new Socket.
 * The old Socket is then destroyed without its handle, which only settles the server's count of
 * connections (it never closes the descriptor).
 *
 * `handle` is the option Node's own cluster and child_process use to wrap a handle in a Socket;
 * it is not in the documentation. adoptable() says whether this Node has what the move needs, so
 * that a Node where it changed falls back to the accepted socket as it is.
 */
import * as net from 'node:net';
import { reusedReads } from './reused-reads';

/** The private handle slot Node keeps on a Socket (lib/net.js: `_handle`). */
interface HandleSlot {
  _handle: unknown;
}

/** Whether the accepted socket can be moved: it has a handle and has not started reading. */
export function adoptable(accepted: net.Socket): boolean {
  const handle = (accepted as unknown as HandleSlot)._handle as { reading?: boolean; readStart?: unknown } | null;
  return handle !== null && typeof handle === 'object' && typeof handle.readStart === 'function' && handle.reading !== true;
}

/**
 * A Socket over the accepted connection's handle whose reads go to `take` in one reused buffer
 * (reusedReads: take says whether it still holds the read). The accepted socket must come from a
 * server with pauseOnConnect (otherwise it may have read already); it is spent afterwards. When
 * the handle cannot be moved (adoptable() is false), the accepted socket is returned, reading the
 * ordinary way: each read is a fresh Buffer, handed to take, whose answer then does not matter.
 */
export function adoptAccepted(accepted: net.Socket, take: (chunk: Buffer) => boolean): net.Socket {
  if (!adoptable(accepted)) {
    accepted.on('data', (chunk: Buffer) => void take(chunk));
    accepted.resume();
    return accepted;
  }
  const slot = accepted as unknown as HandleSlot;
  const handle = slot._handle;
  const socket = new net.Socket({ handle, onread: reusedReads(take), readable: true, writable: true } as net.SocketConstructorOpts);
  slot._handle = null;
  accepted.destroy();
  return socket;
}
