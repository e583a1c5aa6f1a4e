import { readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { AgentClient } from '../agent/agent-client.js';
import { QmpCommandError } from '../qmp/errors.js';
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

export interface Host {
  readonly name: string;
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
      return Promise.all(entries.map(async (e) => ({
        name: e.name,
        type: e.isSymbolicLink() ? 'link' as const : e.isDirectory() ? 'dir' as const : e.isCharacterDevice() ? 'char' as const : 'file' as const,
        ...(e.isSymbolicLink() ? { target: await readlink(`${path}/${e.name}`) } : {}),
      })));
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

export class AgentHost implements Host {
  constructor(readonly agent: AgentClient, readonly name = 'guest') {}

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
