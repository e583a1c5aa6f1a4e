import type { Duplex } from 'node:stream';
import { connectUnixSocket } from '../util/unix-socket.js';
import { EventEmitter } from 'node:events';
import { JsonLineDecoder, stringifyLossless, type Frame } from './framing.js';
import { Transcript } from './transcript.js';
import { type CommandErrorFactory, QmpCommandError, QmpConnectionClosedError, QmpProtocolError, QmpTimeoutError } from './errors.js';
import { TcelabError } from '../util/errors.js';
import { pollUntil } from '../util/poll.js';

/**
 * The protocol half of QMP (and of the guest agent, which speaks QGA's wire
 * format): framing, command ids, replies, timeouts, events, transcript.
 * It knows no command names; vocabularies (QmpClient, AgentClient) sit on top.
 */

export interface ProtocolEvent {
  /** Monotonic index, so a waiter can ask for events after a mark. */
  seq: number;
  event: string;
  data: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface ProtocolOptions {
  /** Name for messages: "QMP", "agent". */
  peer: string;
  transcriptPath?: string;
  maxLineBytes?: number;
  defaultTimeoutMs?: number;
  /** How many past events to keep for waitForEvent(since). */
  eventBacklog?: number;
  /** The exception an error reply becomes (QmpCommandError unless the vocabulary names its own). */
  commandError?: CommandErrorFactory;
}

/**
 * Where a unix socket is dialled: this machine by default, or a guest through its agent's relay (a Host
 * satisfies this shape; the protocol layer needs nothing else of it).
 */
export interface SocketDialer {
  readonly name: string;
  readonly local: boolean;
  connectUnix(path: string): Promise<Duplex>;
}

const thisMachine: SocketDialer = { name: 'host', local: true, connectUnix: connectUnixSocket };

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class ProtocolConnection extends EventEmitter {
  readonly peer: string;
  readonly transcript: Transcript;
  private readonly decoder: JsonLineDecoder;
  private readonly pending = new Map<string, Pending>();
  private readonly untagged: Record<string, unknown>[] = [];
  private readonly untaggedWaiters: Array<(m: Record<string, unknown>) => void> = [];
  private readonly events: ProtocolEvent[] = [];
  private nextId = 1;
  private nextSeq = 1;
  private closedReason: string | undefined;
  readonly defaultTimeoutMs: number;
  private readonly eventBacklog: number;
  private readonly commandError: CommandErrorFactory;
  /** Count of malformed or oversized frames received: a test and verdict input. */
  protocolErrors = 0;

  private constructor(
    private readonly socket: Duplex,
    opts: ProtocolOptions,
  ) {
    super();
    this.peer = opts.peer;
    this.commandError = opts.commandError ?? ((...a) => new QmpCommandError(...a));
    this.transcript = new Transcript(opts.transcriptPath);
    this.decoder = new JsonLineDecoder(opts.maxLineBytes ?? 8 * 1024 * 1024);
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 10_000;
    this.eventBacklog = opts.eventBacklog ?? 1000;
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) this.onFrame(frame);
    });
    socket.on('error', (err) => this.onClose(`socket error: ${err.message}`));
    socket.on('close', () => this.onClose('the peer closed the socket'));
  }

  /**
   * Connects to a unix socket on `host` (this machine by default, or a guest
   * through its agent's relay), retrying while it does not exist yet.
   */
  static async connectUnix(
    path: string,
    opts: ProtocolOptions & { connectTimeoutMs?: number; host?: SocketDialer },
  ): Promise<ProtocolConnection> {
    const host = opts.host ?? thisMachine;
    let lastError: string | undefined;
    const socket = await pollUntil(
      `${opts.peer} socket ${path}${host.local ? '' : ` in the ${host.name}`} to accept a connection`,
      () =>
        host.connectUnix(path).catch((err: Error) => {
          lastError = err.message;
          return undefined;
        }),
      {
        timeoutMs: opts.connectTimeoutMs ?? 10_000,
        intervalMs: 50,
        lastSeen: () => lastError,
        hint: 'check that the process serving it is running; see its log in the run artifacts',
      },
    );
    return new ProtocolConnection(socket, opts);
  }

  static fromSocket(socket: Duplex, opts: ProtocolOptions): ProtocolConnection {
    return new ProtocolConnection(socket, opts);
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Sends {"execute", "arguments", "id"} and resolves with "return". */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts?: { timeoutMs?: number }): Promise<T> {
    if (this.closedReason) {
      return Promise.reject(new QmpConnectionClosedError(`the reply to ${command}`, this.peer, this.closedReason));
    }
    const id = `tcelab-${this.nextId++}`;
    const timeoutMs = opts?.timeoutMs ?? this.defaultTimeoutMs;
    const message: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) message.arguments = args;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.transcript.record('!', `timeout after ${timeoutMs} ms waiting for ${command} (${id})`);
        reject(new QmpTimeoutError(command, timeoutMs, this.peer));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sendRaw(stringifyLossless(message));
    });
  }

  /** Writes one line as is (used for resync and by fuzz tests). */
  sendRaw(line: string | Buffer): void {
    if (this.closedReason) return;
    this.transcript.record('>', typeof line === 'string' ? line : `<${line.length} raw bytes>`);
    // One write per message: a line and its newline in one segment.
    this.socket.write(typeof line === 'string' ? `${line}\n` : line);
  }

  /** After this, input up to the next 0xFF byte is dropped (QGA resync). */
  startResync(): void {
    this.decoder.startResync();
  }

  /** Next message that is neither an event nor a reply to a pending id (e.g. the QMP greeting). */
  nextUntagged(timeoutMs: number, waitingFor: string): Promise<Record<string, unknown>> {
    const ready = this.untagged.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedReason) {
      return Promise.reject(new QmpConnectionClosedError(waitingFor, this.peer, this.closedReason));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.untaggedWaiters.indexOf(waiter);
        if (i >= 0) this.untaggedWaiters.splice(i, 1);
        this.off('closed', onClosed);
        reject(new TcelabError(`${this.peer}: waiting for ${waitingFor}`, `nothing arrived within ${timeoutMs} ms`));
      }, timeoutMs);
      const onClosed = (reason: string) => {
        clearTimeout(timer);
        reject(new QmpConnectionClosedError(waitingFor, this.peer, reason));
      };
      const waiter = (m: Record<string, unknown>) => {
        clearTimeout(timer);
        this.off('closed', onClosed);
        resolve(m);
      };
      this.untaggedWaiters.push(waiter);
      this.once('closed', onClosed);
    });
  }

  /** A mark to pass to waitForEvent so that events arriving after it count. */
  eventMark(): number {
    return this.nextSeq;
  }

  /** Resolves with the first event named `name` (after `since`, if given) matching predicate. */
  waitForEvent(
    name: string,
    opts: { timeoutMs: number; since?: number; predicate?: (data: Record<string, unknown>) => boolean },
  ): Promise<ProtocolEvent> {
    const matches = (e: ProtocolEvent) => e.event === name && (!opts.predicate || opts.predicate(e.data));
    if (opts.since !== undefined) {
      const seen = this.events.find((e) => e.seq >= opts.since! && matches(e));
      if (seen) return Promise.resolve(seen);
    }
    if (this.closedReason) {
      return Promise.reject(new QmpConnectionClosedError(`event ${name}`, this.peer, this.closedReason));
    }
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('closed', onClosed);
      };
      const onEvent = (e: ProtocolEvent) => {
        if (!matches(e)) return;
        cleanup();
        resolve(e);
      };
      const onClosed = (reason: string) => {
        cleanup();
        reject(new QmpConnectionClosedError(`event ${name}`, this.peer, reason));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new TcelabError(`${this.peer}: waiting for event ${name}`, `it did not arrive within ${opts.timeoutMs} ms`));
      }, opts.timeoutMs);
      this.on('event', onEvent);
      this.once('closed', onClosed);
    });
  }

  recentEvents(): readonly ProtocolEvent[] {
    return this.events;
  }

  /** Fails every pending and future command at once with `reason` (e.g. the guest panicked). */
  abort(reason: string): void {
    this.onClose(reason);
    this.socket.destroy();
  }

  async close(): Promise<void> {
    if (!this.closedReason) {
      this.onClose('closed by tcelab');
      await new Promise<void>((resolve) => {
        this.socket.end(() => resolve());
        setTimeout(resolve, 500).unref();
      });
      this.socket.destroy();
    }
    await this.transcript.close();
  }

  private onFrame(frame: Frame): void {
    if (frame.kind !== 'message') {
      this.protocolErrors++;
      const why =
        frame.kind === 'oversized' ? `a line of ${frame.bytes} bytes exceeds the limit` : `${frame.why}: ${frame.raw.slice(0, 200)}`;
      this.transcript.record('!', `dropped input: ${why}`);
      this.emit('protocolError', new QmpProtocolError(this.peer, why));
      return;
    }
    this.transcript.record('<', frame.raw);
    const m = frame.value;
    if (typeof m.event === 'string') {
      const event: ProtocolEvent = {
        seq: this.nextSeq++,
        event: m.event,
        data: (m.data && typeof m.data === 'object' ? m.data : {}) as Record<string, unknown>,
        timestamp: m.timestamp as ProtocolEvent['timestamp'],
      };
      this.events.push(event);
      if (this.events.length > this.eventBacklog) this.events.shift();
      this.emit('event', event);
      return;
    }
    const id = typeof m.id === 'string' ? m.id : undefined;
    if ('return' in m || 'error' in m) {
      // Every command this connection sends carries an id, and the peer echoes it. A reply without one answers a
      // line the peer could not parse, which only raw bytes (a resync, a fuzzer) can be: it is no pending command's
      // answer, however late it arrives (seen: 300 fuzzed lines answered while the next command waited, under load).
      const key = id;
      const p = key !== undefined ? this.pending.get(key) : undefined;
      if (p) {
        this.pending.delete(key!);
        clearTimeout(p.timer);
        if ('error' in m) {
          const e = (m.error ?? {}) as Record<string, unknown>;
          p.reject(this.commandError(p.command, String(e.class ?? 'GenericError'), String(e.desc ?? 'no description'), this.peer));
        } else {
          p.resolve(m.return);
        }
        return;
      }
      if (id !== undefined) {
        // A late reply to a command that already timed out.
        this.transcript.record('!', `reply for ${id} arrived after its timeout; dropped`);
        return;
      }
    }
    const waiter = this.untaggedWaiters.shift();
    if (waiter) waiter(m);
    else {
      // Kept for nextUntagged() (the greeting); a peer answering a flood of raw lines must not grow it without end.
      this.untagged.push(m);
      if (this.untagged.length > 64) this.untagged.shift();
    }
  }

  private onClose(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.transcript.record('!', `connection closed: ${reason}`);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new QmpConnectionClosedError(`the reply to ${p.command} (${id})`, this.peer, reason));
    }
    this.pending.clear();
    this.emit('closed', reason);
  }
}
