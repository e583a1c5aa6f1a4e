import { createWriteStream } from 'node:fs';
import { GuestConsole } from './console.js';
import { QemuTraceLogs } from './trace.js';
import type { RuntimePaths } from './argv.js';
import { TcelabError } from '../util/errors.js';
import type { Host, HostExit, HostProcess } from '../host/host.js';
import { LAB_MARKER_ENV } from '../probes/host-attribution.js';

export type ExitInfo = HostExit;

/**
 * One QEMU process on a Host: this machine, or a guest acting as a lab host
 * (through its agent). The Host starts it so that it dies with its starter
 * (setpriv --pdeathsig here, PR_SET_PDEATHSIG in the agent), so even a
 * SIGKILLed controller leaves no QEMU behind. Its stdout is the guest console
 * and its stderr goes to qemu-stderr.log, on this machine either way.
 */
export class QemuProcess {
  readonly console: GuestConsole;
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
  readonly pid: number;
  /** QEMU's trace from stderr: the host's record of each DMA window, and whether KVM handled the TCEs. */
  readonly trace = new QemuTraceLogs();
  private stderrTail = '';

  private constructor(
    private readonly child: HostProcess,
    paths: RuntimePaths,
  ) {
    this.pid = child.pid;
    this.console = new GuestConsole(paths.consoleLog);
    const stderrFile = createWriteStream(paths.stderrLog, { flags: 'a', mode: 0o600 });
    stderrFile.on('error', () => {});
    child.stdout!.on('data', (d: Buffer) => this.console.append(d));
    child.stderr!.on('data', (d: Buffer) => {
      stderrFile.write(d);
      this.trace.feed(d.toString('utf8'));
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-4000);
    });
    this.exited = child.exited.then((info) => {
      this.exitInfo = info;
      stderrFile.end();
      this.console.end(info.signal ? `killed by ${info.signal}` : `exit code ${info.code}`);
      return info;
    });
  }

  /**
   * `labName` marks QEMU and everything it starts (TCELAB_LAB in their
   * environment), so the host verdicts can tell the lab's processes from a neighbour's.
   */
  static async start(
    host: Host,
    binary: string,
    argv: string[],
    paths: RuntimePaths,
    labName: string,
    cgroupProcs?: string,
  ): Promise<QemuProcess> {
    let child: HostProcess;
    try {
      child = await host.spawn([binary, ...argv], { cwd: paths.hostDir, env: { [LAB_MARKER_ENV]: labName }, cgroupProcs });
    } catch (err) {
      throw new TcelabError(
        `start ${binary} on ${host.name}`,
        (err as Error).message,
        `install QEMU for ppc64 (Debian: qemu-system-ppc${host.local ? '' : '; in a guest: guest.image "with-qemu"'}) or set qemu.binary in the profile`,
      );
    }
    return new QemuProcess(child, paths);
  }

  /** Types on the guest console (hvc0 is QEMU's stdio): a guest without an agent is driven as a person would. */
  typeOnConsole(text: string): void {
    if (!this.child.stdin)
      throw new TcelabError('type on the guest console', 'this host gives QEMU no console input', 'run the lab on this machine');
    this.child.stdin.write(text);
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  stderr(): string {
    return this.stderrTail;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  /** Resolves with the exit info, or undefined if still running after timeoutMs. */
  async waitExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    const result = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    return result;
  }
}
