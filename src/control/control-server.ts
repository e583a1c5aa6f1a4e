import { createServer, type Server, type Socket } from 'node:net';
import { chmod, rm } from 'node:fs/promises';
import { JsonLineDecoder, stringifyLossless } from '../protocol/framing.js';
import { PeerCommandError } from '../protocol/errors.js';
import { TcelabError, describeError } from '../util/errors.js';

/**
 * The control socket of a running lab (`tcelab up`): the same line protocol
 * as QMP and the agent ({"execute","arguments","id"} → {"return"} or
 * {"error"}), served by the controller that owns the lab, so that one-off CLI
 * commands (`tcelab hotplug …`) act on it without a second QMP client.
 */
export type ControlHandler = (args: Record<string, unknown>) => Promise<unknown>;

export class ControlServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly path: string,
    private readonly handlers: Record<string, ControlHandler>,
  ) {}

  async listen(): Promise<void> {
    await rm(this.path, { force: true });
    this.server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.path, () => resolve());
    });
    await chmod(this.path, 0o600);
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new JsonLineDecoder(1024 * 1024);
    // One request at a time per connection, in order.
    let queue = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        queue = queue.then(async () => {
          if (frame.kind !== 'message') {
            socket.write(
              `${stringifyLossless({
                error: { class: 'GenericError', desc: frame.kind === 'oversized' ? 'request too long' : `malformed request: ${frame.why}` },
              })}\n`,
            );
            return;
          }
          const m = frame.value;
          const id = m.id;
          const reply = (body: Record<string, unknown>) =>
            socket.write(`${stringifyLossless(id === undefined ? body : { ...body, id })}\n`);
          const name = m.execute;
          const handler = typeof name === 'string' && Object.hasOwn(this.handlers, name) ? this.handlers[name] : undefined;
          if (!handler) {
            reply({
              error: {
                class: 'CommandNotFound',
                desc: `no control command ${JSON.stringify(name)} (known: ${Object.keys(this.handlers).join(', ')})`,
              },
            });
            return;
          }
          const args = m.arguments ?? {};
          if (typeof args !== 'object' || Array.isArray(args) || args === null) {
            reply({ error: { class: 'InvalidParameter', desc: "'arguments' must be an object" } });
            return;
          }
          try {
            reply({ return: (await handler(args as Record<string, unknown>)) ?? {} });
          } catch (err) {
            const cls = err instanceof PeerCommandError ? err.errorClass : err instanceof TcelabError ? err.name : 'GenericError';
            reply({ error: { class: cls, desc: describeError(err) } });
          }
        });
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await rm(this.path, { force: true });
  }
}
