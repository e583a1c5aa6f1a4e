import { ProtocolConnection, type ProtocolEvent, type ProtocolOptions, type SocketDialer } from '../protocol/protocol.js';
import { QmpProtocolError } from '../protocol/errors.js';

/**
 * QMP vocabulary: the greeting, capability negotiation and typed commands.
 * All traffic goes through one ProtocolConnection.
 */

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpStatus {
  running: boolean;
  status: string;
}

export interface QomProperty {
  name: string;
  type: string;
}

export class QmpClient {
  private constructor(
    readonly connection: ProtocolConnection,
    readonly greeting: QmpGreeting,
  ) {}

  static async connect(
    socketPath: string,
    opts: Partial<ProtocolOptions> & { connectTimeoutMs?: number; greetingTimeoutMs?: number; host?: SocketDialer } = {},
  ): Promise<QmpClient> {
    const connection = await ProtocolConnection.connectUnix(socketPath, { peer: 'QMP', ...opts });
    try {
      const greeting = await connection.nextUntagged(opts.greetingTimeoutMs ?? 10_000, 'the QMP greeting');
      if (!greeting.QMP || typeof greeting.QMP !== 'object') {
        throw new QmpProtocolError('QMP', `expected a greeting {"QMP": ...}, got ${JSON.stringify(greeting).slice(0, 200)}`);
      }
      await connection.execute('qmp_capabilities');
      return new QmpClient(connection, greeting.QMP as QmpGreeting);
    } catch (err) {
      await connection.close();
      throw err;
    }
  }

  get qemuVersion(): string {
    const v = this.greeting.version?.qemu;
    return v ? `${v.major}.${v.minor}.${v.micro}` : 'unknown';
  }

  /** Any command by name, for one-off use from the CLI. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    return this.connection.execute<T>(command, args, { timeoutMs });
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>('query-status');
  }

  stop(): Promise<void> {
    return this.execute('stop') as Promise<void>;
  }

  cont(): Promise<void> {
    return this.execute('cont') as Promise<void>;
  }

  systemPowerdown(): Promise<void> {
    return this.execute('system_powerdown') as Promise<void>;
  }

  quit(): Promise<void> {
    return this.execute('quit') as Promise<void>;
  }

  deviceAdd(driver: string, id: string, props: Record<string, unknown> = {}): Promise<void> {
    return this.execute('device_add', { driver, id, ...props }) as Promise<void>;
  }

  deviceDel(id: string): Promise<void> {
    return this.execute('device_del', { id }) as Promise<void>;
  }

  /**
   * device_del that waits for its own DEVICE_DELETED (a PHB's DRC children each send one first; only the device's
   * own counts). Events are marked before the request, so one that arrives before the reply is not missed.
   * Resolves with how long the request and the wait took.
   */
  async deviceDelAndWait(id: string, timeoutMs: number): Promise<{ requestMs: number; deletedMs: number }> {
    const mark = this.eventMark();
    const t0 = Date.now();
    await this.deviceDel(id);
    const t1 = Date.now();
    await this.waitForEvent('DEVICE_DELETED', { timeoutMs, since: mark, predicate: (d) => d.device === id });
    return { requestMs: t1 - t0, deletedMs: Date.now() - t1 };
  }

  qomList(path: string): Promise<QomProperty[]> {
    return this.execute<QomProperty[]>('qom-list', { path });
  }

  qomGet<T = unknown>(path: string, property: string): Promise<T> {
    return this.execute<T>('qom-get', { path, property });
  }

  humanMonitorCommand(commandLine: string, timeoutMs?: number): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine }, timeoutMs);
  }

  queryPci(): Promise<unknown[]> {
    return this.execute<unknown[]>('query-pci');
  }

  eventMark(): number {
    return this.connection.eventMark();
  }

  waitForEvent(
    name: string,
    opts: { timeoutMs: number; since?: number; predicate?: (data: Record<string, unknown>) => boolean },
  ): Promise<ProtocolEvent> {
    return this.connection.waitForEvent(name, opts);
  }

  onEvent(listener: (e: ProtocolEvent) => void): () => void {
    this.connection.on('event', listener);
    return () => this.connection.off('event', listener);
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}
