#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { reportError } from './output.js';
import { guestBuildCommand } from './guest-command.js';
import { runBootCommand } from './run-command.js';
import { qmpCommand } from './qmp-command.js';
import { scenarioCommand } from './scenario-command.js';
import { reportCommand } from './report-command.js';
import { findScenario, builtinScenarios } from '../scenario/registry.js';

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
  await yargs(argv)
    .scriptName('tcelab')
    .usage('$0 <command>\n\nLab controller for sPAPR VFIO passthrough on pseries guests.')
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout' })
    .command('guest <action>', 'build or inspect the guest image', (y) =>
      y
        .positional('action', { choices: ['build'] as const, describe: 'build: download Debian packages and make vmlinux + initramfs' })
        .option('variant', { choices: ['base', 'with-qemu'] as const, default: 'base' as const, describe: 'image variant' })
        .option('refresh', { type: 'boolean', default: false, describe: 're-resolve the newest package versions' }),
      (a) => run(guestBuildCommand({ variant: a.variant, refresh: a.refresh, json: a.json })),
    )
    .command('run [target]', 'run a scenario by name, or boot a profile and shut it down', (y) =>
      y
        .positional('target', { type: 'string', default: 'emulated', describe: `a scenario (${builtinScenarios.map((s) => s.name).join(', ')}) or a profile` })
        .option('profile', { type: 'string', describe: 'profile for a scenario (default: the scenario\'s own)' })
        .option('results', { type: 'string', describe: 'results dir (default results/<scenario>-<time>)' })
        .option('set', { type: 'string', array: true, default: [] as string[], describe: 'scenario option key=value (e.g. sizeMiB=64)' })
        .option('shutdown', { choices: ['powerdown', 'quit'] as const, default: 'powerdown' as const, describe: 'how a profile boot ends' }),
      (a) => {
        const scenario = findScenario(a.target);
        return run(
          scenario
            ? scenarioCommand(scenario, { profile: a.profile, results: a.results, set: a.set, json: a.json })
            : runBootCommand({ profile: a.target, json: a.json, shutdown: a.shutdown }),
        );
      },
    )
    .command('qmp <target> <qmpCommand> [qmpArguments]', 'run one QMP command against a socket or a (stopped) lab from a profile', (y) =>
      y
        .positional('target', { type: 'string', demandOption: true, describe: 'a QMP socket path or a profile name' })
        .positional('qmpCommand', { type: 'string', demandOption: true })
        .positional('qmpArguments', { type: 'string', describe: 'arguments as a JSON object' })
        .option('timeout', { type: 'number', default: 10, describe: 'seconds to wait for the reply' }),
      (a) => run(qmpCommand({ target: a.target, command: a.qmpCommand, arguments: a.qmpArguments, timeout: a.timeout })),
    )
    .command('report <dir>', 'print the summary of a finished run from its results dir', (y) =>
      y.positional('dir', { type: 'string', demandOption: true, describe: 'a results dir (with results.json)' }),
      (a) => run(reportCommand({ dir: a.dir, json: a.json })),
    )
    .demandCommand(1, 'name a command (tcelab --help lists them)')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`tcelab: ${msg}\n(tcelab --help lists the commands and options)\n`);
      exitCode = 2;
    })
    .help()
    .parseAsync();
  return exitCode;
}

main(hideBin(process.argv)).then(
  (code) => process.exit(code),
  (err) => process.exit(reportError(err)),
);
