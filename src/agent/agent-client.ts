import { randomInt } from 'node:crypto';
import { ProtocolConnection, type ProtocolOptions, type SocketDialer } from '../protocol/protocol.js';
import { QmpTimeoutError } from '../protocol/errors.js';
import { AgentCommandError } from './errors.js';
import { pollUntil } from '../util/poll.js';
import { recordDuration, usualDuration } from '../util/usual.js';
import type {
  AgentInfo,
  CreatedWindow,
  DmaCopy,
  DmaPerm,
  PatternCheck,
  ExecResult,
  StreamChunk,
  GuestCounters,
  RegionInfo,
  TceInfo,
  PinHolder,
  WorkerInfo,
  WorkerStatus,
  ForeignHow,
  EehOp,
} from './types.js';

/**
 * The agent's own ceiling for a worker's exit after a signal (it refuses more). An event wait: it returns at the exit,
 * so the ceiling only bounds a worker that never exits (seen: 5 s was not enough for a worker in the inner guest of the
 * KVM lab host, on a slow machine with another lab beside it).
 */
const WORKER_EXIT_CEILING_MS = 60_000;
const WORKER_EXIT = "a worker's exit after a signal";

/**
 * Vocabulary of the tcelab guest agent over the same ProtocolConnection as
 * QMP (QGA's wire format). There is no greeting: readiness is a successful
 * resync (0xFF + sync-delimited), retried until the agent answers.
 */
export class AgentClient {
  private constructor(readonly connection: ProtocolConnection) {}

  static async connect(
    socketPath: string,
    opts: Partial<ProtocolOptions> & { readyTimeoutMs?: number; host?: SocketDialer } = {},
  ): Promise<AgentClient> {
    const connection = await ProtocolConnection.connectUnix(socketPath, {
      peer: 'agent',
      defaultTimeoutMs: 30_000,
      commandError: (...a) => new AgentCommandError(...a),
      ...opts,
    });
    const client = new AgentClient(connection);
    try {
      await client.resync(opts.readyTimeoutMs ?? 60_000);
    } catch (err) {
      await connection.close();
      throw err;
    }
    return client;
  }

  /**
   * QGA-style resync: 0xFF makes the agent drop any partial request; its reply
   * to sync-delimited starts with 0xFF, up to which the decoder drops input.
   */
  async resync(timeoutMs: number): Promise<void> {
    let last: string | undefined;
    await pollUntil(
      'the guest agent to answer a resync',
      async () => {
        const id = randomInt(1, 2 ** 31);
        this.connection.sendRaw(Buffer.from([0xff]));
        this.connection.startResync();
        try {
          // Short attempts: a sync sent before the agent opened its port is lost, not late.
          const got = await this.connection.execute<number>('sync-delimited', { id }, { timeoutMs: 150 });
          if (got === id) return true;
          last = `expected id ${id}, got ${got}`;
        } catch (err) {
          if (!(err instanceof QmpTimeoutError)) throw err;
          last = err.message;
        }
        return undefined;
      },
      {
        timeoutMs,
        // Each attempt waits 150 ms for its answer: no pause between them.
        intervalMs: 0,
        lastSeen: () => last,
        hint: 'check that the guest booted (console.log) and that the agent started (its messages are on the console)',
      },
    );
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    return this.connection.execute<T>(command, args, { timeoutMs });
  }

  ping(timeoutMs?: number): Promise<{ pong: boolean; pid: number }> {
    return this.execute('ping', undefined, timeoutMs);
  }

  info(): Promise<AgentInfo> {
    return this.execute('info');
  }

  /** The guest's counters; with `rcuBarrier`, read after every RCU callback queued so far has run (GuestCounters.rcuBarrier). */
  counters(pid?: number, opts: { rcuBarrier?: boolean } = {}): Promise<GuestCounters> {
    return this.execute('counters', { ...(pid ? { pid } : {}), ...(opts.rcuBarrier ? { rcuBarrier: true } : {}) });
  }

  bind(device: string): Promise<{ device: string; previousDriver: string | null; group: number }> {
    return this.execute('bind', { device });
  }

  unbind(device: string): Promise<{ device: string; previousDriver: string | null; driver: string | null }> {
    return this.execute('unbind', { device });
  }

  /** Bytes of a device's PCI configuration space as the kernel reads them now (on pseries: RTAS, QEMU's answer). */
  async pciConfigRead(device: string, offset = 0, size = 256): Promise<Buffer> {
    const r = await this.execute<{ hex: string }>('pci-config-read', { device, offset, size });
    return Buffer.from(r.hex, 'hex');
  }

  /** One config register written: 1, 2 or 4 bytes at an offset aligned to their width, one config cycle. */
  pciConfigWrite(device: string, offset: number, bytes: Buffer): Promise<void> {
    return this.execute('pci-config-write', { device, offset, hex: bytes.toString('hex') });
  }

  readFile(path: string, maxBytes?: number): Promise<{ content: string; truncated: boolean }> {
    return this.execute('read-file', { path, ...(maxBytes ? { maxBytes } : {}) });
  }

  writeFile(path: string, content: string): Promise<void> {
    return this.execute('write-file', { path, content });
  }

  listDir(path: string): Promise<Array<{ name: string; type: 'dir' | 'file' | 'link' | 'char'; target?: string }>> {
    return this.execute('list-dir', { path });
  }

  exec(argv: string[], timeoutMs = 30_000): Promise<ExecResult> {
    return this.execute('exec', { argv, timeoutMs }, timeoutMs + 5000);
  }

  /** Every guest process holding VFIO fds or locked/pinned memory, however it came by them. */
  pinHolders(): Promise<PinHolder[]> {
    return this.execute('pin-holders');
  }

  kill(pid: number, signal: 'TERM' | 'KILL' | 'INT' | 'STOP' | 'CONT' = 'TERM'): Promise<void> {
    return this.execute('kill', { pid, signal });
  }

  /** Starts a long-running program (it dies with the agent); read its output with streamRead. */
  spawn(argv: string[], cwd?: string): Promise<{ stream: number; pid: number }> {
    return this.execute('spawn', { argv, ...(cwd ? { cwd } : {}) });
  }

  /** Connects to a unix socket in the guest; its bytes go through streamWrite/streamRead. */
  relayOpen(path: string): Promise<{ stream: number }> {
    return this.execute('relay-open', { path });
  }

  /** Queues bytes for the peer; EAGAIN while a megabyte is still queued. */
  streamWrite(stream: number, data: Buffer): Promise<{ queued: number; pending: number }> {
    return this.execute('stream-write', { stream, data: data.toString('base64') });
  }

  /** A long poll: answered when there is data, the stream ended, or waitMs passed. */
  streamRead(stream: number, waitMs: number): Promise<StreamChunk> {
    return this.execute('stream-read', { stream, waitMs }, waitMs + 10_000);
  }

  streamClose(stream: number): Promise<void> {
    return this.execute('stream-close', { stream });
  }

  async startWorker(): Promise<VfioWorker> {
    const w = await this.execute<WorkerInfo>('worker-start');
    return new VfioWorker(this, w.worker, w.pid);
  }

  workers(): Promise<WorkerInfo[]> {
    return this.execute('worker-list');
  }

  /** Sets the guest's clock (a restored guest wakes with the time it was saved at). */
  setTime(epochMs: number): Promise<void> {
    return this.execute('set-time', { epochMs });
  }

  /** Asks the guest to power off; the reply comes before the power-off. */
  poweroff(): Promise<void> {
    return this.execute('poweroff');
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}

/**
 * A VFIO worker process in the guest: the "userspace tool" under test. A foreign holder of a worker's container
 * (spawnForeign: a forked child, a fresh program given the fd, or a thread) is one too: the same operations, run in
 * that process, reached through its worker.
 */
export class VfioWorker {
  constructor(
    readonly agent: AgentClient,
    readonly id: number,
    readonly pid: number,
    /** Set on a foreign holder: the worker it is reached through, and its id there. */
    readonly foreign?: { owner: VfioWorker; id: number; how: ForeignHow },
  ) {}

  private op<T>(op: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    if (this.foreign) return this.foreign.owner.op<T>('foreign', { foreign: this.foreign.id, op, args }, timeoutMs);
    return this.agent.execute<T>('worker', { worker: this.id, op, args }, timeoutMs);
  }

  /**
   * Another holder of this worker's container, which issues the same operations from its own mm ("thread": from the
   * worker's own, a control): see ForeignHow.
   */
  async spawnForeign(how: ForeignHow): Promise<VfioWorker> {
    const f = await this.op<{ foreign: number; pid: number }>('spawn-foreign', { how }, 60_000);
    return new VfioWorker(this.agent, this.id, f.pid, { owner: this, id: f.foreign, how });
  }

  /** VFIO_IOMMU_ENABLE (a v1 container's; a v2 container answers ENOTTY). */
  enable(): Promise<void> {
    return this.op('enable');
  }

  /** One VFIO_EEH_PE_OP; its return value (get-state: the PE's state), and VFIO_CHECK_EXTENSION(VFIO_EEH). */
  eeh(op: EehOp): Promise<{ op: EehOp; ret: number; eehExtension: number }> {
    return this.op('eeh', { op });
  }

  /** iommu 'v1': a VFIO_SPAPR_TCE_IOMMU container (no DDW, no pre-registration), for seeded faults. */
  open(group: number, iommu: 'v1' | 'v2' = 'v2'): Promise<{ group: number; pid: number; info: TceInfo }> {
    return this.op('open', iommu === 'v2' ? { group } : { group, iommu });
  }

  info(): Promise<TceInfo> {
    return this.op('info');
  }

  alloc(size: number, hugetlb = false): Promise<RegionInfo> {
    return this.op('alloc', { size, hugetlb }, 120_000);
  }

  free(region: number): Promise<void> {
    return this.op('free', { region });
  }

  /** REGISTER_MEMORY of a region (or a sub-range: offset/size may be deliberately misaligned). */
  register(region: number, range: { offset?: number; size?: number } = {}): Promise<{ region: number; vaddr: string; size: number }> {
    return this.op('register', { region, ...range }, 300_000);
  }

  unregister(region: number, range: { offset?: number; size?: number } = {}): Promise<{ region: number; vaddr: string; size: number }> {
    return this.op('unregister', { region, ...range }, 300_000);
  }

  createWindow(pageShift: number, windowSize: bigint | number, levels = 1): Promise<CreatedWindow> {
    return this.op('create-window', { pageShift, windowSize: `0x${BigInt(windowSize).toString(16)}`, levels }, 120_000);
  }

  removeWindow(startAddr: string): Promise<void> {
    return this.op('remove-window', { startAddr });
  }

  /**
   * perm: what the device may do with the memory (read: it reads it, a copy to the device; write; rw, the default).
   * offset: bytes into the region (a vaddr not aligned to the IOMMU page, on purpose).
   */
  map(
    region: number,
    iova: bigint | number,
    range: { offset?: number; size?: number; perm?: DmaPerm } = {},
  ): Promise<{ iova: string; size: number }> {
    return this.op('map', { region, iova: `0x${BigInt(iova).toString(16)}`, ...range }, 300_000);
  }

  /** Fills bytes of a region with the pattern of `seed` (what a copy carries, or a sentinel). */
  fill(region: number, range: { offset?: number; size: number }, seed: number): Promise<void> {
    return this.op('fill', { region, ...range, seed });
  }

  /** Whether bytes of a region hold the pattern of `seed`; if not, how many differ and how many are zero. */
  check(region: number, range: { offset?: number; size: number }, seed: number): Promise<PatternCheck> {
    return this.op('check', { region, ...range, seed });
  }

  /** The group's device by PCI address: BAR0 mmapped, bus master on; `swapped`: its registers read byte-swapped. */
  deviceOpen(address: string): Promise<{ address: string; id: string; edu: boolean; swapped: boolean; bar0Size: number }> {
    return this.op('device-open', { address });
  }

  /** The device's MSI on an eventfd: `dma` then counts the interrupts of each copy. */
  msiEnable(): Promise<void> {
    return this.op('msi-enable');
  }

  /** One copy by edu's DMA engine between an IOVA and its buffer (at most 4096 bytes), waited for. */
  dma(copy: {
    direction: 'to-device' | 'from-device';
    iova: bigint;
    size: number;
    deviceOffset?: number;
    irq?: boolean;
  }): Promise<DmaCopy> {
    const { iova, ...rest } = copy;
    return this.op('dma', { ...rest, iova: `0x${iova.toString(16)}` }, 30_000);
  }

  deviceClose(): Promise<void> {
    return this.op('device-close');
  }

  unmap(iova: bigint | number, size: number): Promise<{ iova: string; size: number }> {
    return this.op('unmap', { iova: `0x${BigInt(iova).toString(16)}`, size }, 300_000);
  }

  closeContainer(): Promise<void> {
    return this.op('close-container');
  }

  closeGroup(): Promise<void> {
    return this.op('close-group');
  }

  /** The seeded leak: a child process that inherits the container and group fds. */
  forkHolder(): Promise<{ pid: number }> {
    return this.op('fork-holder');
  }

  /** Duplicates another process's fds into this worker (pidfd_getfd), as if passed to it. */
  adoptFds(pid: number, fds: number[]): Promise<{ fds: number[] }> {
    return this.op('adopt-fds', { pid, fds });
  }

  status(): Promise<WorkerStatus> {
    return this.op('status');
  }

  /**
   * Signals the worker (a foreign holder: that process, or a thread's end) and waits for it to exit. Its exit closes
   * its VFIO fds, which unpins and clears everything the container held (in a nested KVM guest, each cleared TCE a
   * hypercall through two hypervisors): that is the event waited for, up to the agent's ceiling, and how long it took
   * is recorded as this machine's usual.
   */
  async stop(signal: 'TERM' | 'KILL' = 'TERM', waitMs = WORKER_EXIT_CEILING_MS): Promise<WorkerInfo> {
    if (this.foreign) {
      const ended = await this.foreign.owner.op<{ signal?: number; exitCode?: number }>('foreign-stop', {
        foreign: this.foreign.id,
        signal,
      });
      return { worker: this.id, pid: this.pid, alive: false, ...ended };
    }
    const t0 = Date.now();
    try {
      const info = await this.agent.execute<WorkerInfo>('worker-stop', { worker: this.id, signal, waitMs }, waitMs + 5000);
      recordDuration(WORKER_EXIT, Date.now() - t0);
      return info;
    } catch (err) {
      if (err instanceof AgentCommandError && err.errorClass === 'ETIMEDOUT') {
        throw new AgentCommandError(
          'worker-stop',
          err.errorClass,
          `${err.desc}; a worker's exit after a signal is ${usualDuration(WORKER_EXIT)}`,
          err.peer,
        );
      }
      throw err;
    }
  }

  exit(code = 0): Promise<void> {
    return this.op('exit', { code });
  }
}
