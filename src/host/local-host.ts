import { readFile, readdir, readlink, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { run } from '../util/exec.js';
import { connectUnixSocket } from '../util/unix-socket.js';
import { missingErrnoCodes, type DirEntry, type Host, type HostExit, type HostProcess, type SpawnOptions } from './host.js';

/** This machine: the controller's own processes, files and sockets. */
const missing = (err: unknown) => missingErrnoCodes.includes((err as NodeJS.ErrnoException).code ?? '');

export class LocalHost implements Host {
  readonly name = 'host';
  readonly local = true;
  readonly gone = false;

  async spawn(argv: string[], opts: SpawnOptions = {}): Promise<HostProcess> {
    // setpriv --pdeathsig: the kernel kills the child when the controller dies, even by SIGKILL.
    const usePdeathsig = process.platform === 'linux' && existsSync('/usr/bin/setpriv');
    const withPdeathsig = usePdeathsig ? ['/usr/bin/setpriv', '--pdeathsig', 'SIGKILL', '--', ...argv] : argv;
    // Into the cgroup before the exec: memory is charged where it is first touched, and moving later would leave QEMU's first pages behind.
    const [cmd, ...args] = opts.cgroupProcs
      ? ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', opts.cgroupProcs, ...withPdeathsig]
      : withPdeathsig;
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
      stdin: child.stdin!,
      exited,
      kill: (signal) => {
        if (!done) child.kill(signal);
      },
    };
  }

  connectUnix(path: string): Promise<Duplex> {
    return connectUnixSocket(path);
  }

  makePrivateDir(prefix: string): Promise<string> {
    return mkdtemp(prefix);
  }

  removeDir(path: string): Promise<void> {
    return rm(path, { recursive: true, force: true });
  }

  async readFile(path: string): Promise<string | undefined> {
    try {
      // /proc and /sys are served from kernel memory and never block: a synchronous read costs a
      // tenth of the thread-pool round trip, which matters at 20 samples a second.
      return path.startsWith('/proc/') || path.startsWith('/sys/fs/cgroup/') ? readFileSync(path, 'utf8') : await readFile(path, 'utf8');
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
