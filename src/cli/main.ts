#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { commandTable } from './commands.js';
import { interruptExitCode } from './interrupt.js';
import { reportError } from './output.js';
import { resolveQemuInput } from '../qemu/stage-qemu.js';
import { withKconfigAdditions } from '../kernel/kernel-spec.js';

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const run = (p: Promise<number>) =>
    p.then(
      (c) => {
        exitCode = c;
      },
      (err) => {
        exitCode = reportError(err);
      },
    );
  const handleUsage = (err: unknown) => {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`tcelab: ${err.message}\n(tcelab --help lists the commands and options)\n`);
    exitCode = 2;
  };
  try {
    await yargs(argv)
      .scriptName('tcelab')
      .usage('$0 <command>\n\nLab controller for sPAPR VFIO passthrough on pseries guests.')
      .option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout' })
      .option('snapshots', {
        type: 'boolean',
        default: false,
        describe:
          'start labs from a saved, booted machine where that is faithful (the default: QEMU 8.2 or later, migratable devices; ' +
          'TCELAB_SNAPSHOTS=use)',
      })
      .option('cold', {
        type: 'boolean',
        default: false,
        describe: 'boot every lab cold and save nothing (TCELAB_SNAPSHOTS=off), whatever the environment says',
      })
      .option('kernel', {
        type: 'string',
        describe:
          'the guest kernel under test: debian:<suite>[/64k][@<version glob>] (e.g. debian:experimental), deb:<a.deb,…>, ' +
          'local:<vmlinux>[,<modules root>], or built from source: tree:<git tree>[@<ref>][,64k] or ' +
          "debian-source:<suite|version>[/64k] (TCELAB_KERNEL); default: the profile's guest.kernel (debian:trixie)",
      })
      .option('kconfig-add', {
        type: 'string',
        array: true,
        describe:
          'with a kernel built from source: add kconfig options over the lab fragment, CONFIG_X=y or a fragment file ' +
          '(repeatable; e.g. --kconfig-add CONFIG_KASAN=y); `tcelab kernel config` shows the result',
      })
      .option('qemu', {
        type: 'string',
        describe:
          "the host QEMU: a path, a name on PATH, or debian:<suite> (staged from that suite's packages, e.g. debian:trixie) " +
          "(TCELAB_QEMU); default: the profile's qemu.binary",
      })
      .middleware(async (a) => {
        if (a.snapshots) process.env.TCELAB_SNAPSHOTS = 'use';
        if (a.cold) process.env.TCELAB_SNAPSHOTS = 'off';
        // Every profile a command loads takes them (loadProfile), so run, up, doctor and matrix all do.
        // --kconfig-add: folded into --kernel's spec (kconfig=…), and kept for the kernels of profiles and --kernels.
        const adds = (a.kconfigAdd as string[] | undefined) ?? [];
        if (adds.length) process.env.TCELAB_KCONFIG_ADD = JSON.stringify(adds);
        if (a.kernel !== undefined) process.env.TCELAB_KERNEL = withKconfigAdditions(a.kernel, adds);
        const qemu = a.qemu ?? process.env.TCELAB_QEMU;
        if (qemu !== undefined) process.env.TCELAB_QEMU = await resolveQemuInput(qemu, a.qemu !== undefined ? '--qemu' : 'TCELAB_QEMU');
      })
      .command(commandTable(run))
      .demandCommand(1, 'name a command (tcelab --help lists them)')
      .strict()
      .fail((msg, err) => {
        // Throwing stops yargs here: a bad flag must never reach a command handler.
        throw err && err.name !== 'YError' ? err : new UsageError(msg ?? err?.message);
      })
      .help()
      .parseAsync();
  } catch (err) {
    // yargs throws a validation failure synchronously out of parseAsync().
    handleUsage(err);
  }
  return exitCode;
}

// An interrupted run ends with 128+signal whatever the command's own error path says.
/**
 * Exits once stdout and stderr have taken everything written to them: a pipe's writes are asynchronous, and
 * process.exit() drops what is still queued (seen: a 333 KB --json report cut at 219 KB).
 */
function exitWhenFlushed(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main(hideBin(process.argv)).then(
  (code) => exitWhenFlushed(interruptExitCode() ?? code),
  (err) => exitWhenFlushed(interruptExitCode() ?? reportError(err)),
);
