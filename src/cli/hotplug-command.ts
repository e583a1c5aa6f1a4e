import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ProtocolConnection } from '../protocol/protocol.js';
import { TcelabError } from '../util/errors.js';
import { runtimeRoot } from '../util/paths.js';
import { CONTROL_SOCKET } from './up-command.js';
import { bigintSafe } from '../util/json.js';

/** The control socket of the lab named by --lab, or of the only running lab. */
export function findControlSocket(lab?: string): string {
  if (lab) {
    const s = lab.endsWith('.sock') ? lab : join(lab, CONTROL_SOCKET);
    if (!existsSync(s))
      throw new TcelabError(`lab ${lab}`, `no control socket at ${s}`, 'start one with `tcelab up`, and pass its runtime dir');
    return s;
  }
  const root = runtimeRoot();
  const running = existsSync(root)
    ? readdirSync(root)
        .map((d) => join(root, d, CONTROL_SOCKET))
        .filter((s) => existsSync(s))
    : [];
  if (running.length === 0) throw new TcelabError('find a running lab', `none under ${root}`, 'start one with `tcelab up [profile]`');
  if (running.length > 1)
    throw new TcelabError(
      'find a running lab',
      `${running.length} are running`,
      `pick one with --lab (${running.map((s) => s.replace(`/${CONTROL_SOCKET}`, '')).join(', ')})`,
    );
  return running[0]!;
}

/** One request to a running lab's control socket; its reply. */
export async function controlCall(args: {
  lab?: string;
  command: string;
  arguments?: Record<string, unknown>;
  timeoutSec?: number;
}): Promise<Record<string, unknown>> {
  const socket = findControlSocket(args.lab);
  const conn = await ProtocolConnection.connectUnix(socket, {
    peer: 'lab control',
    defaultTimeoutMs: (args.timeoutSec ?? 180) * 1000,
    connectTimeoutMs: 2000,
  });
  try {
    return await conn.execute<Record<string, unknown>>(args.command, args.arguments ?? {});
  } finally {
    await conn.close();
  }
}

export async function controlRequest(args: {
  lab?: string;
  command: string;
  arguments?: Record<string, unknown>;
  json: boolean;
  timeoutSec?: number;
}): Promise<number> {
  const result = await controlCall(args);
  process.stdout.write(`${JSON.stringify(result, bigintSafe, 2)}\n`);
  return 0;
}
