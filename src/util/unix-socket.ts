import { connect } from 'node:net';
import type { Duplex } from 'node:stream';

/** A connected stream to a unix socket on this machine; rejects while nothing listens there. */
export function connectUnixSocket(path: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
