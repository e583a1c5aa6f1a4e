import { existsSync, statSync } from 'node:fs';
import { QmpClient } from '../qmp/qmp-client.js';
import { dirname, join } from 'node:path';
import { InputError, TcelabError } from '../util/errors.js';
import { CONTROL_SOCKET } from './up-command.js';
import { parseJsonText } from '../util/validate.js';
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { Lab } from '../lab/lab.js';
import { StderrProgress } from '../util/progress.js';
import { controlCall } from './hotplug-command.js';

/**
 * `tcelab qmp <profile|socket> <command> [json]`: one QMP command. Against a
 * socket path it talks to a running QEMU; against a profile it starts that lab
 * stopped (-S), runs the command, and tears the lab down.
 */
export async function qmpCommand(args: {
  target: string;
  command: string;
  arguments?: string;
  timeout: number;
  lab?: string;
}): Promise<number> {
  let parsed: Record<string, unknown> | undefined;
  if (args.arguments !== undefined) {
    const v = parseJsonText(args.arguments, 'QMP arguments');
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new InputError('QMP arguments', 'json', 'must be a JSON object');
    parsed = v as Record<string, unknown>;
  }
  const relay = (lab: string | undefined, command: 'qmp' | 'inner-qmp') =>
    controlCall({
      lab,
      command,
      arguments: { command: args.command, ...(parsed ? { arguments: parsed } : {}) },
      timeoutSec: args.timeout + 5,
    });
  // The QEMUs of a running lab (`tcelab up`): its controller holds their only QMP connection, so it relays.
  // "inner": the inner QEMU of a nested lab host, whose socket is in the guest.
  if (args.target === 'lab' || args.target === 'inner') {
    print((await relay(args.lab, args.target === 'lab' ? 'qmp' : 'inner-qmp')).return);
    return 0;
  }
  const isSocket = existsSync(args.target) && statSync(args.target).isSocket();
  if (isSocket) {
    // A running lab's own QMP socket: QEMU serves one client, the lab's controller; dialling it would wait for a
    // greeting that never comes. Its controller's control socket sits beside it.
    const control = join(dirname(args.target), CONTROL_SOCKET);
    if (existsSync(control)) {
      process.stderr.write(`tcelab qmp: ${args.target} is held by the controller of this lab; relaying through ${control}\n`);
      print((await relay(control, 'qmp')).return);
      return 0;
    }
    const qmp = await QmpClient.connect(args.target).catch((err) => {
      throw new TcelabError(
        `QMP socket ${args.target}`,
        (err as Error).message,
        'QEMU serves one QMP client at a time: if a tcelab run holds this lab, use `tcelab qmp lab …` with `tcelab up`, or its --live view',
      );
    });
    try {
      print(await qmp.execute(args.command, parsed, args.timeout * 1000));
    } finally {
      await qmp.close();
    }
    return 0;
  }
  const profile = await loadProfile(args.target);
  const image = await requireGuestImage(profile.guest.image, profile.guest.kernel);
  const lab = await Lab.launch(profile, { image, progress: new StderrProgress(), extraArgs: ['-S'] });
  try {
    print(await lab.qmp.execute(args.command, parsed, args.timeout * 1000));
  } finally {
    await lab.close();
  }
  return 0;
}

function print(value: unknown): void {
  process.stdout.write(typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`);
}
