import type { ImageVariant } from '../image/image-variant.js';
import type { Argv, ArgumentsCamelCase, CommandModule } from 'yargs';
import { guestBuildCommand } from './guest-command.js';
import { runBootCommand } from './run-command.js';
import { qmpCommand } from './qmp-command.js';
import { scenarioCommand, listCommand, resolveScenario } from './scenario-command.js';
import { reportCommand } from './report-command.js';
import { upCommand } from './up-command.js';
import { doctorCommand } from './doctor-command.js';
import { controlRequest } from './hotplug-command.js';
import { consoleCommand, execCommand } from './lab-access-command.js';
import { cacheCommand } from './cache-command.js';
import { qemuCommand } from './qemu-command.js';
import { kernelConfigCommand, kernelSourceCommand } from './kernel-command.js';
import { kconfigAdditions } from '../qemu/profile.js';
import { matrixCommand } from './matrix-command.js';
import { bisectCommand } from './bisect-command.js';
import { mergeCommand } from './merge-command.js';
import { reproExportCommand, reproTryCommand } from './repro-command.js';
import { fuzzHcallCommand } from './fuzz-command.js';
import { InputError } from '../util/errors.js';
import { listProfiles } from '../qemu/profile.js';
import { profileExists, requireProfileInput } from './profile-input.js';
import { listScenarioFiles } from '../scenario/data/scenario-file.js';

/** --kcidb and --ktap: what KernelCI and KTAP readers get, on every command that has reports (run, matrix, report). */
const EXCHANGE_OPTIONS = {
  kcidb: { type: 'string', describe: 'also write a KernelCI KCIDB v5.3 document to this file' },
  ktap: { type: 'string', describe: 'also write KTAP v1 to this file (no value: KTAP on stdout instead of the summary)' },
} as const;

/** The options every command takes (main declares them). */
export interface GlobalOptions {
  json: boolean;
  snapshots: boolean;
  cold: boolean;
  kernel?: string;
  kconfigAdd?: string[];
  qemu?: string;
}

/**
 * One command: what it is called and takes (builder), and what it does (handler, which reports through run; a
 * command whose builder registers subcommands has none).
 */
function command<T>(
  name: string,
  describe: string,
  builder: (y: Argv<GlobalOptions>) => Argv<T>,
  handler?: (a: ArgumentsCamelCase<T>) => unknown,
): CommandModule {
  return { command: name, describe, builder, handler: handler ?? (() => {}) } as unknown as CommandModule;
}

type Run = (p: Promise<number>) => Promise<void>;

function guestEntry(run: Run): CommandModule {
  return command(
    'guest <action>',
    'build or inspect the guest image',
    (y) =>
      y
        .positional('action', { choices: ['build'] as const, describe: 'build: download Debian packages and make vmlinux + initramfs' })
        .option('variant', {
          type: 'string',
          default: 'base',
          describe:
            'image variant: base, with-qemu, with-qemu:<suite> (the guest QEMU from another Debian suite, e.g. with-qemu:sid), ' +
            'or kvm-host (with-qemu plus KVM-HV and the base image for its inner guest)',
        })
        .option('with-qemu', {
          type: 'boolean',
          default: false,
          describe: 'the same as --variant with-qemu: the guest can run QEMU (a nested lab host)',
        })
        .option('refresh', { type: 'boolean', default: false, describe: 're-resolve the newest package versions' }),
    (a) =>
      run(
        guestBuildCommand({
          variant: a.withQemu ? 'with-qemu' : (a.variant as ImageVariant),
          refresh: a.refresh,
          json: a.json,
          kernel: process.env.TCELAB_KERNEL,
        }),
      ),
  );
}

function runEntry(run: Run): CommandModule {
  return command(
    'run [target]',
    'run a scenario (or --all), or boot a profile and shut it down',
    (y) =>
      y
        .positional('target', { type: 'string', describe: 'a scenario (tcelab list) or a profile; default: the emulated profile' })
        .option('all', { type: 'boolean', default: false, describe: 'run every scenario in scenarios/ (a suite)' })
        .option('jobs', { type: 'number', default: 1, describe: 'labs at once in a suite' })
        .option('shard', { type: 'string', describe: 'i/n: run only shard i of n of the suite' })
        .option('repeat', { type: 'number', default: 1, describe: 'run each scenario N times' })
        .option('live', { type: 'string', describe: 'serve a live view on 127.0.0.1 (optionally on this port) with a token URL' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'list the runs (of this shard) without running them' })
        .option('profile', { type: 'string', describe: "profile for a scenario (default: the scenario's own), or the profile to boot" })
        .option('results', { type: 'string', describe: 'results dir (default results/<scenario>-<time>)' })
        .option('set', {
          type: 'string',
          array: true,
          default: [] as string[],
          describe: 'scenario option key=value (e.g. sizeMiB=64)',
        })
        .options(EXCHANGE_OPTIONS)
        .option('shutdown', {
          choices: ['powerdown', 'quit'] as const,
          default: 'powerdown' as const,
          describe: 'how a profile boot ends',
        }),
    (a) =>
      run(
        (async () => {
          const args = {
            target: a.target,
            all: a.all,
            profile: a.profile,
            results: a.results,
            set: a.set,
            json: a.json,
            repeat: a.repeat,
            jobs: a.jobs,
            shard: a.shard,
            dryRun: a.dryRun,
            live: a.live,
            kcidb: a.kcidb,
            ktap: a.ktap,
          };
          if (a.all) return scenarioCommand(args);
          const resolved = a.target ? await resolveScenario(a.target) : undefined;
          if (resolved) return scenarioCommand(args, resolved);
          if (a.target && !profileExists(a.target)) {
            throw new InputError(
              'tcelab run',
              a.target,
              'is neither a scenario nor a profile',
              `scenarios: ${(await listScenarioFiles()).join(', ')}; profiles: ${(await listProfiles()).join(', ')}`,
            );
          }
          // A profile boot: the target or --profile names it (both only if they agree: one lab is booted).
          if (a.target && a.profile && a.target !== a.profile)
            throw new InputError('tcelab run', '--profile', `boots one profile: ${a.target} is one already (drop --profile or the target)`);
          if (a.profile) await requireProfileInput('tcelab run', a.profile);
          return runBootCommand({ profile: a.target ?? a.profile ?? 'emulated', json: a.json, shutdown: a.shutdown });
        })(),
      ),
  );
}

function doctorEntry(run: Run): CommandModule {
  return command(
    'doctor',
    'check what a profile needs from this machine, and explain what is missing',
    (y) =>
      y.option('profile', { type: 'string', describe: 'one profile (default: all shipped ones)' }).option('inner', {
        type: 'boolean',
        default: false,
        describe: "for a nested lab host: boot its guest and check the inner lab's needs there, through the agent",
      }),
    (a) => run(doctorCommand({ profile: a.profile, json: a.json, inner: a.inner })),
  );
}

function sweepEntry(run: Run): CommandModule {
  return command(
    'sweep',
    'clean up after labs whose controller died (kill QEMU, restore devices, keep artifacts)',
    (y) => y,
    (a) =>
      run(
        (async () => {
          const { sweepStaleLabs } = await import('../lab/sweep.js');
          const { LocalHost } = await import('../host/local-host.js');
          const swept = await sweepStaleLabs(undefined, new LocalHost());
          process.stdout.write(
            a.json
              ? `${JSON.stringify(swept, null, 2)}\n`
              : swept.length
                ? swept
                    .map(
                      (s) =>
                        `swept ${s.dir} (controller ${s.controllerPid} ` +
                        `gone${s.qemuKilled ? ', QEMU killed' : ''}${s.restored.length ? `, restored ${s.restored.join(', ')}` : ''}) ` +
                        `→ ${s.keptAs}\n`,
                    )
                    .join('')
                : 'no stale labs\n',
          );
          return 0;
        })(),
      ),
  );
}

function listEntry(run: Run): CommandModule {
  return command(
    'list',
    'profiles and scenarios',
    (y) => y,
    (a) => run(listCommand({ json: a.json as boolean })),
  );
}

function qmpEntry(run: Run): CommandModule {
  return command(
    'qmp <target> <qmpCommand> [qmpArguments]',
    'run one QMP command against a socket or a (stopped) lab from a profile',
    (y) =>
      y
        .positional('target', {
          type: 'string',
          demandOption: true,
          describe:
            'a QMP socket path, a profile name, "lab": the QEMU of a running `tcelab up` lab (relayed by its controller), ' +
            'or "inner": the inner QEMU of a running nested lab (`tcelab up nested-lab-host`)',
        })
        .positional('qmpCommand', { type: 'string', demandOption: true })
        .positional('qmpArguments', { type: 'string', describe: 'arguments as a JSON object' })
        .option('timeout', { type: 'number', default: 10, describe: 'seconds to wait for the reply' })
        .option('lab', { type: 'string', describe: 'with "lab" or "inner": runtime dir of the lab (default: the only running one)' }),
    (a) => run(qmpCommand({ target: a.target, command: a.qmpCommand, arguments: a.qmpArguments, timeout: a.timeout, lab: a.lab })),
  );
}

function matrixEntry(run: Run): CommandModule {
  return command(
    'matrix [scenarios..]',
    'run scenarios on several kernels (and QEMUs) and report what changed between them',
    (y) =>
      y
        .positional('scenarios', { type: 'string', array: true, default: [] as string[], describe: 'scenarios (tcelab list)' })
        .option('all', { type: 'boolean', default: false, describe: 'every scenario in scenarios/' })
        .option('kernels', {
          type: 'string',
          demandOption: true,
          describe: 'comma-separated kernel specs, oldest first: debian:trixie,debian:trixie-backports,debian:experimental',
        })
        .option('qemus', { type: 'string', describe: "comma-separated host QEMU binaries to compare (default: the profile's)" })
        .option('jobs', { type: 'number', default: 1, describe: 'labs at once' })
        .option('profile', { type: 'string', describe: "the lab profile of every run (default: each scenario's own)" })
        .option('shard', { type: 'string', describe: 'i/n: run only shard i of n of the matrix' })
        .option('results', { type: 'string', describe: 'results dir (default results/matrix-<time>)' })
        .option('set', { type: 'string', array: true, default: [] as string[], describe: 'scenario option key=value' })
        .options(EXCHANGE_OPTIONS),
    (a) =>
      run(
        matrixCommand({
          scenarios: a.scenarios as string[],
          all: a.all,
          kernels: a.kernels,
          qemus: a.qemus,
          jobs: a.jobs,
          profile: a.profile,
          shard: a.shard,
          results: a.results,
          set: a.set as string[],
          json: a.json,
          kcidb: a.kcidb,
          ktap: a.ktap,
        }),
      ),
  );
}

function bisectEntry(run: Run): CommandModule {
  return command(
    'bisect <scenario>',
    'find the commit of a kernel tree that broke a check (git bisect, with each commit built and judged by a lab run)',
    (y) =>
      y
        .positional('scenario', { type: 'string', demandOption: true, describe: 'the scenario that judges each commit (tcelab list)' })
        .option('tree', { type: 'string', demandOption: true, describe: 'a git tree of a kernel (never checked out or changed)' })
        .option('good', { type: 'string', demandOption: true, describe: 'a commit (ref) where the behaviour is right' })
        .option('bad', { type: 'string', demandOption: true, describe: 'a later commit (ref) where it is broken' })
        .option('check', {
          type: 'string',
          describe: "the check that judges (its name as a run's report gives it); default: the scenario's whole verdict",
        })
        .option('profile', { type: 'string', describe: "the lab profile of every run (default: the scenario's own)" })
        .option('set', { type: 'string', array: true, default: [] as string[], describe: 'scenario option key=value' })
        .option('results', { type: 'string', describe: 'results dir (default results/bisect-<scenario>-<time>)' }),
    (a) =>
      run(
        bisectCommand({
          scenario: a.scenario,
          tree: a.tree,
          good: a.good,
          bad: a.bad,
          check: a.check,
          profile: a.profile,
          set: a.set as string[],
          kconfigAdd: a.kconfigAdd ?? [],
          kernel: a.kernel,
          results: a.results,
          json: a.json,
        }),
      ),
  );
}

function hmpEntry(run: Run): CommandModule {
  return command(
    'hmp <target> <commandLine>',
    'run one HMP command (through QMP human-monitor-command), e.g. tcelab hmp lab "info mtree"',
    (y) =>
      y
        .positional('target', {
          type: 'string',
          demandOption: true,
          describe: 'as for `tcelab qmp`: a socket, a profile, "lab" or "inner"',
        })
        .positional('commandLine', { type: 'string', demandOption: true })
        .option('timeout', { type: 'number', default: 10, describe: 'seconds to wait for the reply' })
        .option('lab', { type: 'string', describe: 'with "lab" or "inner": runtime dir of the lab (default: the only running one)' }),
    (a) =>
      run(
        qmpCommand({
          target: a.target,
          command: 'human-monitor-command',
          arguments: JSON.stringify({ 'command-line': a.commandLine }),
          timeout: a.timeout,
          lab: a.lab,
        }),
      ),
  );
}

function upEntry(run: Run): CommandModule {
  return command(
    'up [profile]',
    'boot a lab and keep it running, with a control socket for `tcelab hotplug`',
    (y) => y.positional('profile', { type: 'string', default: 'emulated' }),
    (a) => run(upCommand({ profile: a.profile, json: a.json })),
  );
}

function execEntry(run: Run): CommandModule {
  return command(
    'exec [cmd..]',
    "run a program in a running lab's guest (`tcelab up`) through its agent: tcelab exec -- uname -r",
    (y) =>
      y
        .positional('cmd', { type: 'string', array: true, describe: 'the program and its arguments (after --)' })
        .option('lab', { type: 'string', describe: 'runtime dir of the lab (default: the only running one)' })
        .option('inner', { type: 'boolean', default: false, describe: 'in the inner guest of a KVM lab host (kvm-lab-host)' })
        .option('timeout', { type: 'number', default: 60, describe: 'seconds the program may run' }),
    // After --, yargs leaves the words in _ (after the command's own name), unparsed: the program's own flags stay its.
    (a) => run(execCommand({ argv: [...(a.cmd ?? []), ...a._.slice(1)].map(String), lab: a.lab, inner: a.inner, timeout: a.timeout })),
  );
}

function consoleEntry(run: Run): CommandModule {
  return command(
    'console',
    "a running lab's console: interactive for a `tcelab up` lab (Ctrl-] detaches), read-only for its inner guest or a run",
    (y) =>
      y
        .option('lab', { type: 'string', describe: 'runtime dir of the lab (default: the only running `tcelab up` one)' })
        .option('inner', { type: 'boolean', default: false, describe: 'the inner guest of a lab host (read-only)' })
        .option('read-only', { type: 'boolean', default: false, describe: 'show the console, type nothing' })
        .option('follow', { type: 'boolean', default: true, describe: 'keep showing what comes (--no-follow: what is there, then exit)' }),
    (a) => run(consoleCommand({ lab: a.lab, inner: a.inner, readOnly: a.readOnly, follow: a.follow })),
  );
}

function hotplugEntry(run: Run): CommandModule {
  return command('hotplug', 'hot-plug PHBs and devices in a running lab (`tcelab up`)', (y) =>
    y
      .option('lab', { type: 'string', describe: 'runtime dir of the lab (default: the only running one)' })
      .command(
        'phb <action> <target>',
        'add <index> | remove <id>',
        (z) =>
          z
            .positional('action', { choices: ['add', 'remove'] as const, demandOption: true })
            .positional('target', { type: 'string', demandOption: true })
            .option('ddw', { type: 'boolean', default: true, describe: 'enable DDW on an added PHB' })
            .option('id', { type: 'string', describe: 'QEMU id of an added PHB (default hphb<index>)' }),
        (a) => {
          if (a.action === 'add') {
            const index = Number(a.target);
            return run(
              controlRequest({
                lab: a.lab,
                json: a.json,
                command: 'hotplug-phb',
                arguments: { index: Number.isInteger(index) ? index : a.target, ddw: a.ddw, ...(a.id ? { id: a.id } : {}) },
              }),
            );
          }
          return run(controlRequest({ lab: a.lab, json: a.json, command: 'unplug-phb', arguments: { id: a.target } }));
        },
      )
      .command(
        'device <action> <target> [id]',
        'add <phb> <id> | remove <id>',
        (z) =>
          z
            .positional('action', { choices: ['add', 'remove'] as const, demandOption: true })
            .positional('target', { type: 'string', demandOption: true })
            .positional('id', { type: 'string' })
            .option('driver', { type: 'string', default: 'edu', describe: 'QEMU device driver (vfio-pci on a lab host)' })
            .option('host', { type: 'string', describe: 'host PCI address for vfio-pci' }),
        (a) =>
          run(
            a.action === 'add'
              ? controlRequest({
                  lab: a.lab,
                  json: a.json,
                  command: 'hotplug-device',
                  arguments: { phb: a.target, id: a.id ?? 'hpdev0', driver: a.driver, ...(a.host ? { host: a.host } : {}) },
                })
              : controlRequest({ lab: a.lab, json: a.json, command: 'unplug-device', arguments: { id: a.target } }),
          ),
      )
      .command(
        'list',
        'what is plugged, and the guest’s IOMMU groups',
        (z) => z,
        (a) => run(controlRequest({ lab: a.lab as string | undefined, json: a.json as boolean, command: 'list' })),
      )
      .command(
        'windows',
        'the host’s view of every DMA window',
        (z) => z,
        (a) => run(controlRequest({ lab: a.lab as string | undefined, json: a.json as boolean, command: 'windows' })),
      )
      .command(
        'status',
        'the running lab',
        (z) => z,
        (a) => run(controlRequest({ lab: a.lab as string | undefined, json: a.json as boolean, command: 'status' })),
      )
      .command(
        'shutdown',
        'power the lab down, with what was hot-plugged in it',
        (z) => z,
        (a) => run(controlRequest({ lab: a.lab as string | undefined, json: a.json as boolean, command: 'shutdown' })),
      )
      .demandCommand(1, 'name a hotplug action'),
  );
}

function qemuEntry(run: Run): CommandModule {
  return command(
    'qemu [action] [spec]',
    'the host QEMUs staged from Debian packages (debian:<suite>, as profiles and --qemu name them): stage one now, or list them',
    (y) =>
      y
        .positional('action', { choices: ['stage', 'list'] as const, default: 'stage' as const })
        .positional('spec', { type: 'string', describe: 'debian:<suite> (default: every one the profiles name)' })
        .option('refresh', { type: 'boolean', default: false, describe: 'with stage: resolve the suite again and stage what it has now' }),
    (a) => run(qemuCommand({ action: a.action, spec: a.spec, refresh: a.refresh, json: a.json })),
  );
}

function kernelEntry(run: Run): CommandModule {
  return command(
    'kernel <action> [spec]',
    'kernels built from source (--kernel tree:… or debian-source:…): config prints the configuration they are built with; ' +
      'source prints the git repository and commit a debian-source: spec is built from',
    (y) =>
      y
        .positional('action', {
          choices: ['config', 'source'] as const,
          describe:
            "config: the lab's fragment (kernel-configs/lab.config, each option with why), the page size and your --kconfig-add; " +
            'source <debian-source:…>: Debian’s source committed to a git repository in the cache (clone it with git clone --shared ' +
            'to put commits on top: builds of the clone share its build dir)',
        })
        .positional('spec', {
          type: 'string',
          describe: 'source: a debian-source: spec (debian-source:trixie, debian-source:6.12.107+patches)',
        })
        .option('64k', { type: 'boolean', default: false, describe: 'the configuration of a 64 KiB-page kernel' }),
    (a) =>
      run(
        a.action === 'source'
          ? kernelSourceCommand({ spec: a.spec, json: a.json })
          : kernelConfigCommand({ kconfigAdd: kconfigAdditions(), pages64k: a['64k'] === true, json: a.json }),
      ),
  );
}

function cacheEntry(run: Run): CommandModule {
  return command(
    'cache [action]',
    'the saved, booted machines (snapshots) labs start from: list them, or prune',
    (y) =>
      y
        .positional('action', { choices: ['list', 'prune'] as const, default: 'list' as const })
        .option('all', { type: 'boolean', default: false, describe: 'with prune: remove every snapshot' })
        .option('limit', {
          type: 'number',
          describe: 'with prune: keep the most recently used within this many MiB (default: TCELAB_SNAPSHOT_LIMIT_MIB or 4096)',
        }),
    (a) => run(cacheCommand({ action: a.action, all: a.all, limitMiB: a.limit, json: a.json })),
  );
}

function reportEntry(run: Run): CommandModule {
  return command(
    'report <dirs..>',
    'print the summary of a finished run from its results dir; --merge: bring the shards of a pipeline together',
    (y) =>
      y
        .positional('dirs', {
          type: 'string',
          array: true,
          demandOption: true,
          describe: 'a results dir (with results.json or summary.json)',
        })
        .option('merge', {
          type: 'boolean',
          default: false,
          describe: 'merge the results of --shard runs (from any machines) into --results',
        })
        .option('results', { type: 'string', describe: 'with --merge: the dir the merged results go to' })
        .options(EXCHANGE_OPTIONS),
    (a) => {
      const dirs = a.dirs as string[];
      if (a.merge) return run(mergeCommand({ dirs, results: a.results, json: a.json, kcidb: a.kcidb, ktap: a.ktap }));
      if (dirs.length !== 1)
        return run(Promise.reject(new InputError('tcelab report', dirs.join(' '), 'takes one results dir (or --merge)')));
      return run(reportCommand({ dir: dirs[0]!, json: a.json, kcidb: a.kcidb, ktap: a.ktap }));
    },
  );
}

function reproEntry(run: Run): CommandModule {
  return command(
    'repro <action> [target]',
    'export: a reproducer bundle (static agent, steps, run.sh, REPORT.txt) for a failed or known-defect check; ' +
      'try: run a bundle in a fresh guest without the agent',
    (y) =>
      y
        .positional('action', { choices: ['export', 'try'] as const })
        .positional('target', { type: 'string', describe: "export: a run's results dir; try: a bundle dir" })
        .option('check', { type: 'string', describe: "export: the check (default: the run's first failure tcelab can reproduce)" })
        .option('scenario', { type: 'string', describe: 'export without a results dir: the scenario (with --check)' })
        .option('matrix', { type: 'string', describe: 'export: a `tcelab matrix` results dir: the kernels it reproduces on' })
        .option('out', { type: 'string', describe: 'export: the bundle dir (default: <results>/repro-<id>)' })
        .option('profile', { type: 'string', describe: 'try: the lab profile (default emulated)' })
        .option('results', { type: 'string', describe: "try: where the guest's console and records go" }),
    (a) =>
      run(
        a.action === 'export'
          ? reproExportCommand({ target: a.target, scenario: a.scenario, check: a.check, matrix: a.matrix, out: a.out, json: a.json })
          : reproTryCommand({ target: a.target, profile: a.profile, results: a.results, json: a.json }),
      ),
  );
}

function fuzzEntry(run: Run): CommandModule {
  return command(
    'fuzz <target>',
    "seeded random TCE hypercalls and DDW RTAS calls from the guest, each answer judged against a model of QEMU's handlers; " +
      'the first disagreement shrunk and written as a scenario file',
    (y) =>
      y
        .positional('target', {
          choices: ['hcall'] as const,
          describe: 'hcall: H_GET/PUT/STUFF_TCE, H_PUT_TCE_INDIRECT, the DDW RTAS calls',
        })
        .option('seed', { type: 'string', describe: 'the sequence (0 to 2^32-1): the same seed gives the same calls' })
        .option('count', { type: 'string', describe: 'how many calls (1 to 10 000 000)' })
        .option('time', { type: 'string', describe: 'stop issuing calls after S seconds of fuzzing' })
        .option('batch', { type: 'string', describe: 'calls between checks that QEMU runs and the agent answers (default 500)' })
        .option('profile', { type: 'string', describe: 'the lab (default emulated: QEMU answers the TCE hypercalls)' })
        .option('results', { type: 'string', describe: 'results dir (default results/fuzz-hcall-<seed>-<time>)' })
        .option('seed-faults', {
          type: 'string',
          describe:
            'faults of the model, comma-separated (misaligned-ioba-refused, partial-write-forgotten): the fuzz must then report a disagreement',
        }),
    (a) =>
      run(
        fuzzHcallCommand({
          seed: a.seed,
          count: a.count,
          time: a.time,
          batch: a.batch,
          profile: a.profile,
          results: a.results,
          seedFaults: a.seedFaults,
          json: a.json,
        }),
      ),
  );
}

/**
 * Every command of the tcelab CLI; a new command is one entry. `run` reports a command's outcome (its exit code, or
 * its error, said once) to main.
 */
export function commandTable(run: Run): CommandModule[] {
  return [
    guestEntry(run),
    runEntry(run),
    doctorEntry(run),
    sweepEntry(run),
    listEntry(run),
    qmpEntry(run),
    matrixEntry(run),
    bisectEntry(run),
    hmpEntry(run),
    upEntry(run),
    execEntry(run),
    consoleEntry(run),
    hotplugEntry(run),
    cacheEntry(run),
    kernelEntry(run),
    qemuEntry(run),
    reproEntry(run),
    reportEntry(run),
    fuzzEntry(run),
  ];
}
