import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';
import { testRuntimeRoot } from './lab.js';

/** A `tcelab up` lab of the test's own, and the CLI pointed at it. */
export interface UpLab {
  root: string;
  /** The up command's first JSON line: {up, runtimeDir, controlSocket, guestKernel}. */
  info: { runtimeDir: string; controlSocket: string; guestKernel: string };
  cli(args: string[], input?: string, timeoutMs?: number): SpawnSyncReturns<string>;
  /** Asks the lab to shut down; resolves with the up command's exit code. */
  shutdown(): Promise<number | null>;
}

export async function upLab(profile: string): Promise<UpLab> {
  const root = testRuntimeRoot();
  const env = { ...process.env, TCELAB_RUNTIME_DIR: root };
  const main = join(packageRoot, 'dist/cli/main.js');
  const up = spawn(process.execPath, [main, 'up', profile, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  up.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((r) => up.on('exit', (code) => r(code)));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    up.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    up.on('exit', () => reject(new Error(`tcelab up ${profile} exited before it was up: ${stderr}`)));
  });
  const cli = (args: string[], input?: string, timeoutMs = 60_000) =>
    spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env, timeout: timeoutMs, input });
  return {
    root,
    info: JSON.parse(line),
    cli,
    shutdown: async () => {
      cli(['hotplug', 'shutdown']);
      return exited;
    },
  };
}
