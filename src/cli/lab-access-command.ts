import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../util/errors.js';
import { controlCall, findControlSocket } from './hotplug-command.js';

/** Ctrl-] detaches from an interactive console, as telnet's escape does. */
const DETACH = 0x1d;

/**
 * `tcelab exec [--lab DIR] [--inner] -- CMD…`: a program in a running lab's guest (or its inner guest), through the
 * agent; its output on stdout/stderr and its exit code as tcelab's.
 */
export async function execCommand(args: { argv: string[]; lab?: string; inner: boolean; timeout: number }): Promise<number> {
  if (args.argv.length === 0) throw new InputError('tcelab exec', 'CMD', 'name the program to run after --, e.g. tcelab exec -- uname -r');
  if (!Number.isInteger(args.timeout) || args.timeout < 1 || args.timeout > 3600)
    throw new InputError('--timeout', String(args.timeout), 'must be whole seconds from 1 to 3600');
  const r = (await controlCall({
    lab: args.lab,
    command: 'exec',
    arguments: { argv: args.argv, inner: args.inner, timeoutSec: args.timeout },
    timeoutSec: args.timeout + 30,
  })) as { exitCode: number; stdout: string; stderr: string; timedOut?: boolean };
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.timedOut) {
    process.stderr.write(`tcelab exec: ${args.argv[0]} did not finish within ${args.timeout} s; it was killed\n`);
    return 124;
  }
  return r.exitCode;
}

/**
 * `tcelab console [--lab DIR] [--inner] [--read-only] [--no-follow]`: a running lab's console. A `tcelab up` lab's is
 * interactive where stdin is a terminal (keys go to the guest's console shell; Ctrl-] detaches) or a pipe (its
 * lines are typed); the inner guest's, and any lab's with --read-only, are only shown. A lab of `tcelab run` (a
 * runtime dir without a control socket) is shown from its console.log as it grows: read-only alongside the run.
 */
export async function consoleCommand(args: { lab?: string; inner: boolean; readOnly: boolean; follow: boolean }): Promise<number> {
  if (args.lab && !existsSync(join(args.lab, 'control.sock')) && existsSync(join(args.lab, 'console.log'))) {
    if (args.inner)
      throw new InputError('--inner', 'true', `${args.lab} is a lab of tcelab run: its inner console is in inner-runtime/*/console.log`);
    return tailFile(join(args.lab, 'console.log'), args.follow);
  }
  const socket = findControlSocket(args.lab);
  const call = (command: string, a: Record<string, unknown>) =>
    controlCall({ lab: socket, command, arguments: { ...a, inner: args.inner } });
  let since: number | undefined;
  const read = async (waitMs: number) => {
    const r = (await call('console-read', since === undefined ? { waitMs } : { since, waitMs })) as {
      text: string;
      next: number;
      running: boolean;
    };
    process.stdout.write(r.text);
    since = r.next;
    return r.running;
  };
  // The inner QEMU runs in the host guest through its agent, which gives it no standard input.
  if (args.inner && !args.readOnly)
    process.stderr.write("tcelab console: the inner guest's console is read-only (its QEMU gets no console input)\n");
  if (!args.follow) {
    await read(0);
    return 0;
  }
  const interactive = !args.readOnly && !args.inner;
  let detached = false;
  let typing = Promise.resolve();
  const stdin = process.stdin;
  if (interactive) {
    if (stdin.isTTY) {
      stdin.setRawMode(true);
      process.stderr.write('tcelab console: attached (Ctrl-] detaches)\r\n');
    }
    stdin.on('data', (chunk: Buffer) => {
      const cut = stdin.isTTY ? chunk.indexOf(DETACH) : -1;
      const keys = cut >= 0 ? chunk.subarray(0, cut) : chunk;
      if (keys.length) typing = typing.then(() => call('console-write', { text: keys.toString('utf8') }).then(() => {}));
      if (cut >= 0) detached = true;
    });
    // Piped input: its lines are typed, and the console is followed a moment longer for their output.
    stdin.on('end', () => {
      void typing.then(() => setTimeout(() => (detached = true), 3000));
    });
  }
  try {
    while (!detached && (await read(500)));
    await typing;
  } finally {
    if (interactive && stdin.isTTY) stdin.setRawMode(false);
    stdin.pause();
  }
  return 0;
}

/** A console.log shown as it grows, until the lab's QEMU is gone (its controller removes or keeps the dir). */
async function tailFile(path: string, follow: boolean): Promise<number> {
  const fh = await open(path, 'r');
  try {
    let at = 0;
    const buf = Buffer.alloc(65536);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, at);
      if (bytesRead > 0) {
        process.stdout.write(buf.subarray(0, bytesRead));
        at += bytesRead;
        continue;
      }
      if (!follow || !existsSync(path)) return 0;
      // QEMU's exit is written to the console by its controller: "[tcelab: …]" ends the log.
      await new Promise((r) => setTimeout(r, 250));
      if (!existsSync(join(path, '..', 'qemu.pid'))) return 0;
    }
  } finally {
    await fh.close();
  }
}
