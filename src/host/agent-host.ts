import { basename, dirname } from 'node:path';
import { constants } from 'node:os';
import { Duplex, PassThrough } from 'node:stream';
import type { AgentClient } from '../agent/agent-client.js';
import { AgentCommandError } from '../agent/errors.js';
import { QmpTimeoutError } from '../protocol/errors.js';
import { missingErrnoCodes, type DirEntry, type Host, type HostExit, type HostProcess, type SpawnOptions } from './host.js';

const signalNames = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));
const agentSignals: Partial<Record<NodeJS.Signals, 'TERM' | 'KILL' | 'INT' | 'STOP' | 'CONT'>> = {
  SIGTERM: 'TERM',
  SIGKILL: 'KILL',
  SIGINT: 'INT',
  SIGSTOP: 'STOP',
  SIGCONT: 'CONT',
};

/** Bytes per stream-write: 256 KiB of base64 in a request line, a quarter of the agent's line limit. */
const RELAY_SLICE = 192 * 1024;

/** How long one stream-read may wait in the agent: bounds how late a torn-down stream is closed. */
const LONG_POLL_MS = 500;

/**
 * Reads a stream until it ends, long-polling the agent. Ends with the last
 * chunk (done), or undefined when the agent went away (the guest shut down).
 */
async function pumpStream(agent: AgentClient, stream: number, sink: (out: Buffer, err: Buffer) => void, stopped: () => boolean) {
  for (;;) {
    let chunk: Awaited<ReturnType<AgentClient['streamRead']>>;
    try {
      chunk = await agent.streamRead(stream, LONG_POLL_MS);
    } catch (err) {
      // A busy agent (a slow exec) delays a read; it does not end the stream.
      if (err instanceof QmpTimeoutError && !agent.connection.closed) continue;
      return undefined;
    }
    sink(Buffer.from(chunk.out, 'base64'), Buffer.from(chunk.err, 'base64'));
    if (chunk.done || stopped()) {
      await agent.streamClose(stream).catch(() => {});
      return chunk;
    }
  }
}

/** A unix socket in the guest, relayed by the agent: writes are stream-write, reads a long poll. */
class AgentRelay extends Duplex {
  private stopped = false;

  constructor(
    private readonly agent: AgentClient,
    private readonly stream: number,
  ) {
    // allowHalfOpen false: when the guest side closes, this side ends too and emits 'close'.
    super({ allowHalfOpen: false });
    void pumpStream(
      agent,
      stream,
      (out) => {
        if (out.length && !this.destroyed) this.push(out);
      },
      () => this.stopped,
    ).then((last) => {
      if (this.destroyed) return;
      if (last) this.push(null);
      else this.destroy(new Error('the guest agent went away'));
    });
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeAll(chunk).then(
      () => cb(),
      (err: Error) => cb(err),
    );
  }

  /**
   * In slices that keep each request line well under the agent's limit; while
   * the agent still holds a megabyte the peer has not taken (EAGAIN), wait.
   */
  private async writeAll(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      const slice = chunk.subarray(at, at + RELAY_SLICE);
      try {
        await this.agent.streamWrite(this.stream, slice);
        at += slice.length;
      } catch (err) {
        if (!(err instanceof AgentCommandError && err.errorClass === 'EAGAIN') || this.stopped) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // The pump closes the agent's end after its current long poll.
    this.stopped = true;
    cb(err);
  }
}

export class AgentHost implements Host {
  readonly local = false;

  get gone(): boolean {
    return this.agent.connection.closed;
  }

  constructor(
    readonly agent: AgentClient,
    readonly name = 'guest',
  ) {}

  async spawn(argv: string[], opts: SpawnOptions = {}): Promise<HostProcess> {
    const { stream, pid } = await this.agent.spawn(argv, opts.cwd);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let done = false;
    const exited = pumpStream(
      this.agent,
      stream,
      (out, err) => {
        if (out.length) stdout.write(out);
        if (err.length) stderr.write(err);
      },
      () => false,
    ).then((last): HostExit => {
      done = true;
      stdout.end();
      stderr.end();
      // No last chunk: the agent (the whole guest) went away, and the program with it.
      if (!last) return { code: null, signal: 'SIGKILL', at: Date.now() };
      return { code: last.exitCode ?? null, signal: last.signal ? (signalNames.get(last.signal) ?? 'SIGKILL') : null, at: Date.now() };
    });
    return {
      pid,
      stdout,
      stderr,
      exited,
      kill: (signal) => {
        const name = agentSignals[signal];
        if (!name) throw new Error(`the agent cannot send ${signal}`);
        if (!done) void this.agent.kill(pid, name).catch(() => {});
      },
    };
  }

  async connectUnix(path: string): Promise<Duplex> {
    const { stream } = await this.agent.relayOpen(path);
    return new AgentRelay(this.agent, stream);
  }

  async makePrivateDir(prefix: string): Promise<string> {
    const r = await this.agent.exec(['mktemp', '-d', `${prefix}XXXXXX`], 10_000);
    if (r.exitCode !== 0) throw new Error(`mktemp -d in the guest failed: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  async removeDir(path: string): Promise<void> {
    await this.agent.exec(['rm', '-rf', path], 10_000);
  }

  private static missing(err: unknown): boolean {
    return err instanceof AgentCommandError && missingErrnoCodes.includes(err.errorClass);
  }

  async readFile(path: string): Promise<string | undefined> {
    try {
      return (await this.agent.readFile(path, 1024 * 1024)).content;
    } catch (err) {
      if (AgentHost.missing(err)) return undefined;
      throw err;
    }
  }

  writeFile(path: string, content: string): Promise<void> {
    return this.agent.writeFile(path, content);
  }

  async listDir(path: string): Promise<DirEntry[] | undefined> {
    try {
      return await this.agent.listDir(path);
    } catch (err) {
      if (AgentHost.missing(err)) return undefined;
      throw err;
    }
  }

  async readLink(path: string): Promise<string | undefined> {
    const entries = await this.listDir(dirname(path));
    return entries?.find((e) => e.name === basename(path) && e.type === 'link')?.target;
  }

  async exec(argv: string[], timeoutMs = 30_000): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const r = await this.agent.exec(argv, timeoutMs);
    return { exitCode: r.timedOut ? 124 : r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }
}
