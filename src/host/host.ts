import { readFile, readdir, readlink, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { constants } from 'node:os';
import { Duplex, PassThrough, type Readable } from 'node:stream';
import type { AgentClient } from '../agent/agent-client.js';
import { QmpCommandError, QmpTimeoutError } from '../qmp/errors.js';
import { run } from '../util/exec.js';

/**
 * A machine whose /proc and /sys tcelab reads and writes: this one, or a
 * guest reached through its agent. Probes, doctor and the vfio-pci binder are
 * written once against Host and run unchanged on either.
 */
export interface DirEntry {
  name: string;
  type: 'dir' | 'file' | 'link' | 'char';
  target?: string;
}

/** How a process on a Host ended. `at` is when the controller learned it (ms since the epoch). */
export interface HostExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** A long-running process on a Host (a QEMU): its output as streams, its end as a promise. */
export interface HostProcess {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly exited: Promise<HostExit>;
  /** Sends a signal; a process that already exited is not an error. */
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  cwd?: string;
  /** Added to the environment the program inherits (a guest's agent ignores it). */
  env?: Record<string, string>;
}

export interface Host {
  readonly name: string;
  /** This machine (the controller's own processes, files and sockets) or one reached through an agent. */
  readonly local: boolean;
  /** The host went away (a guest that shut down): nothing on it is left to clean up. */
  readonly gone: boolean;
  /**
   * Starts a program that dies with whatever started it (the controller here,
   * the agent in a guest), so a lost controller never leaves a lab behind.
   */
  spawn(argv: string[], opts?: SpawnOptions): Promise<HostProcess>;
  /** A byte stream to a unix socket on this host; rejects while nothing listens there. */
  connectUnix(path: string): Promise<Duplex>;
  /** A new directory only its owner can enter, for sockets and pid files. */
  makePrivateDir(prefix: string): Promise<string>;
  removeDir(path: string): Promise<void>;
  /** File contents, or undefined if the file does not exist (e.g. a process that exited). */
  readFile(path: string): Promise<string | undefined>;
  writeFile(path: string, content: string): Promise<void>;
  /** Entries, or undefined if the directory does not exist. */
  listDir(path: string): Promise<DirEntry[] | undefined>;
  /** A symlink's target, or undefined if it is not there. */
  readLink(path: string): Promise<string | undefined>;
  exec(argv: string[], timeoutMs?: number): Promise<{ exitCode: number; stdout: string; stderr: string }>;
}

const missing = (err: unknown) => ['ENOENT', 'ESRCH', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

export class LocalHost implements Host {
  readonly name = 'host';
  readonly local = true;
  readonly gone = false;

  async spawn(argv: string[], opts: SpawnOptions = {}): Promise<HostProcess> {
    // setpriv --pdeathsig: the kernel kills the child when the controller dies, even by SIGKILL.
    const usePdeathsig = process.platform === 'linux' && existsSync('/usr/bin/setpriv');
    const [cmd, ...args] = usePdeathsig ? ['/usr/bin/setpriv', '--pdeathsig', 'SIGKILL', '--', ...argv] : argv;
    const child = spawn(cmd!, args, {
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const exited = new Promise<HostExit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
    let done = false;
    void exited.then(() => (done = true));
    return {
      pid: child.pid!,
      stdout: child.stdout!,
      stderr: child.stderr!,
      exited,
      kill: (signal) => {
        if (!done) child.kill(signal);
      },
    };
  }

  connectUnix(path: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
  }

  makePrivateDir(prefix: string): Promise<string> {
    return mkdtemp(prefix);
  }

  removeDir(path: string): Promise<void> {
    return rm(path, { recursive: true, force: true });
  }

  async readFile(path: string): Promise<string | undefined> {
    try {
      // /proc is served from kernel memory and never blocks: a synchronous read costs a
      // tenth of the thread-pool round trip, which matters at 20 samples a second.
      return path.startsWith('/proc/') ? readFileSync(path, 'utf8') : await readFile(path, 'utf8');
    } catch (err) {
      if (missing(err)) return undefined;
      throw err;
    }
  }

  writeFile(path: string, content: string): Promise<void> {
    return writeFile(path, content);
  }

  async listDir(path: string): Promise<DirEntry[] | undefined> {
    try {
      const entries = await readdir(path, { withFileTypes: true });
      return Promise.all(
        entries.map(async (e) => ({
          name: e.name,
          type: e.isSymbolicLink()
            ? ('link' as const)
            : e.isDirectory()
              ? ('dir' as const)
              : e.isCharacterDevice()
                ? ('char' as const)
                : ('file' as const),
          ...(e.isSymbolicLink() ? { target: await readlink(`${path}/${e.name}`) } : {}),
        })),
      );
    } catch (err) {
      if (missing(err)) return undefined;
      throw err;
    }
  }

  async readLink(path: string): Promise<string | undefined> {
    try {
      return await readlink(path);
    } catch (err) {
      if (missing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return undefined;
      throw err;
    }
  }

  async exec(argv: string[], timeoutMs = 30_000): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    try {
      const r = await Promise.race([
        run(argv[0]!, argv.slice(1)),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), timeoutMs).unref()),
      ]);
      return { exitCode: 0, ...r };
    } catch (err) {
      return { exitCode: 1, stdout: '', stderr: (err as Error).message };
    }
  }
}

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
    let chunk;
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
        if (!(err instanceof QmpCommandError && err.errorClass === 'EAGAIN') || this.stopped) throw err;
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
    return err instanceof QmpCommandError && ['ENOENT', 'ESRCH', 'ENOTDIR'].includes(err.errorClass);
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
