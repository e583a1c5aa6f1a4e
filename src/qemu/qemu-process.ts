import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { GuestConsole } from './console.js';
import { DdwTraceLog } from '../ddw/host-view.js';
import type { RuntimePaths } from './argv.js';
import { TcelabError } from '../util/errors.js';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/**
 * One QEMU process. It is started under `setpriv --pdeathsig SIGKILL` where
 * available, so that even a SIGKILLed controller leaves no QEMU behind; its
 * stdout is the guest console and its stderr goes to qemu-stderr.log.
 */
export class QemuProcess {
  readonly console: GuestConsole;
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
  readonly pid: number;
  /** spapr_iommu_ddw_* trace events from stderr: the host's record of each DMA window. */
  readonly ddwTrace = new DdwTraceLog();
  private stderrTail = '';

  private constructor(private readonly child: ChildProcess, paths: RuntimePaths) {
    this.pid = child.pid!;
    this.console = new GuestConsole(paths.consoleLog);
    const stderrFile = createWriteStream(paths.stderrLog, { flags: 'a', mode: 0o600 });
    stderrFile.on('error', () => {});
    child.stdout!.on('data', (d: Buffer) => this.console.append(d));
    child.stderr!.on('data', (d: Buffer) => {
      stderrFile.write(d);
      this.ddwTrace.feed(d.toString('utf8'));
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal, at: Date.now() };
        stderrFile.end();
        this.console.end(signal ? `killed by ${signal}` : `exit code ${code}`);
        resolve(this.exitInfo);
      });
    });
  }

  static async start(binary: string, argv: string[], paths: RuntimePaths): Promise<QemuProcess> {
    const usePdeathsig = existsSync('/usr/bin/setpriv') && process.platform === 'linux';
    const cmd = usePdeathsig ? '/usr/bin/setpriv' : binary;
    const args = usePdeathsig ? ['--pdeathsig', 'SIGKILL', '--', binary, ...argv] : argv;
    const child = spawn(cmd, args, { cwd: paths.dir, stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) =>
        reject(new TcelabError(`start ${binary}`, err.message, `install QEMU for ppc64 (Debian: qemu-system-ppc) or set qemu.binary in the profile`)),
      );
    });
    return new QemuProcess(child, paths);
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
