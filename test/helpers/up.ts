import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/paths.js';
import { testRuntimeRoot } from './lab.js';

/** A `tcelab up` lab of the test's own, and the CLI pointed at it. */
/** The tcelab CLI on a runtime root: a one-off command's result. */
export function cliOn(root: string): (args: string[], input?: string, timeoutMs?: number) => SpawnSyncReturns<string> {
  const env = { ...process.env, TCELAB_RUNTIME_DIR: root };
  return (args, input, timeoutMs = 60_000) =>
    spawnSync(process.execPath, [join(packageRoot, 'dist/cli/main.js'), ...args], { encoding: 'utf8', env, timeout: timeoutMs, input });
}

export interface UpLab {
  root: string;
  /** The up command's first JSON line: {up, runtimeDir, controlSocket, guestKernel}. */
  info: { runtimeDir: string; controlSocket: string; guestKernel: string };
  cli(args: string[], input?: string, timeoutMs?: number): SpawnSyncReturns<string>;
  /** Asks the lab to shut down; resolves with the up command's exit code. */
  shutdown(): Promise<number | null>;
}

/** Starts `tcelab up PROFILE --json` on a runtime root (a new one of the test's own by default), once it says it is up. */
export async function upLab(profile: string, root = testRuntimeRoot()): Promise<UpLab> {
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
  const cli = cliOn(root);
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
