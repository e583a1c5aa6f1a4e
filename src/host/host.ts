import { readFile } from 'node:fs/promises';
import type { AgentClient } from '../agent/agent-client.js';
import { QmpCommandError } from '../qmp/errors.js';

/**
 * A machine whose /proc and /sys tcelab reads: this one, or a guest reached
 * through its agent. Probes and checks are written once against Host.
 */
export interface Host {
  readonly name: string;
  /** File contents, or undefined if the file does not exist (e.g. a process that exited). */
  readFile(path: string): Promise<string | undefined>;
}

export class LocalHost implements Host {
  readonly name = 'host';

  async readFile(path: string): Promise<string | undefined> {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
      throw err;
    }
  }
}

export class AgentHost implements Host {
  constructor(readonly agent: AgentClient, readonly name = 'guest') {}

  async readFile(path: string): Promise<string | undefined> {
    try {
      return (await this.agent.readFile(path, 1024 * 1024)).content;
    } catch (err) {
      if (err instanceof QmpCommandError && (err.errorClass === 'ENOENT' || err.errorClass === 'ESRCH')) return undefined;
      throw err;
    }
  }
}
