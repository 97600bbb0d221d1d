/**
 * Binding a listening socket, for the client listener (server.ts), the primary's listener with
 * --processes N (processes/primary.ts) and the admin server (admin/server.ts): a failure to bind
 * rejects (the caller says what and exits); an error after that is reported, never thrown.
 */
import type * as net from 'node:net';
import type { HostPort } from './config';

export function listenOn(srv: net.Server, address: HostPort, onLaterError: (err: Error) => void): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host: address.host, port: address.port }, () => {
      srv.off('error', reject);
      srv.on('error', onLaterError);
      resolve(srv.address() as net.AddressInfo);
    });
  });
}
