import { spawn } from 'node:child_process';
import { TcelabError } from './errors.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; a non-zero exit is a TcelabError carrying stderr's tail. */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; what?: string; hint?: string; input?: Buffer; stdoutBuffer?: boolean } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) =>
      reject(new TcelabError(opts.what ?? `run ${cmd}`, e.message, opts.hint ?? `is ${cmd} installed? (scripts/bootstrap.sh installs it)`)),
    );
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve({ stdout, stderr });
      else {
        const tail = stderr.trim().split('\n').slice(-8).join('\n    ');
        reject(
          new TcelabError(
            opts.what ?? `${cmd} ${args.join(' ')}`.slice(0, 200),
            `exited with ${signal ?? `code ${code}`}${tail ? `:\n    ${tail}` : ''}`,
            opts.hint,
          ),
        );
      }
    });
    if (opts.input) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** Runs a command and returns stdout as a Buffer (for binary output such as `xz -dc`). */
export function runBinary(cmd: string, args: string[], what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => reject(new TcelabError(what, e.message)));
    child.on('close', (code) =>
      code === 0
        ? resolve(Buffer.concat(out))
        : reject(new TcelabError(what, `${cmd} exited with ${code}: ${Buffer.concat(err).toString().trim()}`)),
    );
  });
}
