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

/** query-migrate's reply: no status before a migration starts; error-desc once one failed. */
export interface QmpMigrationInfo {
  status?: 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'completed' | 'failed' | (string & {});
  'error-desc'?: string;
}

/** A migration capability and whether it is on (migrate-set-capabilities). */
export interface QmpMigrationCapability {
  capability: string;
  state: boolean;
}

/** One bus of query-pci's reply, with what tcelab reads of its devices. */
export interface QmpPciBus {
  bus: number;
  devices: Array<{ bus: number; slot: number; function: number; qdev_id: string; id: { vendor: number; device: number } }>;
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
    const negotiationMs = opts.greetingTimeoutMs ?? 10_000;
    try {
      const greeting = await connection.nextUntagged(negotiationMs, 'the QMP greeting');
      if (!greeting.QMP || typeof greeting.QMP !== 'object') {
        throw new QmpProtocolError('QMP', `expected a greeting {"QMP": ...}, got ${JSON.stringify(greeting).slice(0, 200)}`);
      }
      // Answered from QEMU's main loop, which runs once machine init is done: as long as the greeting may take.
      await connection.execute('qmp_capabilities', undefined, { timeoutMs: negotiationMs });
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

  queryPci(): Promise<QmpPciBus[]> {
    return this.execute<QmpPciBus[]>('query-pci');
  }

  migrateSetCapabilities(capabilities: QmpMigrationCapability[]): Promise<void> {
    return this.execute('migrate-set-capabilities', { capabilities }) as Promise<void>;
  }

  /** Starts an outgoing migration to `uri` (e.g. exec:cat > file); query-migrate follows it. */
  migrate(uri: string): Promise<void> {
    return this.execute('migrate', { uri }) as Promise<void>;
  }

  /** Starts the incoming migration of a QEMU started with -incoming defer; query-migrate follows it. */
  migrateIncoming(uri: string): Promise<void> {
    return this.execute('migrate-incoming', { uri }) as Promise<void>;
  }

  queryMigrate(): Promise<QmpMigrationInfo> {
    return this.execute<QmpMigrationInfo>('query-migrate');
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
