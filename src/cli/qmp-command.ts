import { existsSync, statSync } from 'node:fs';
import { QmpClient } from '../qmp/qmp-client.js';
import { InputError } from '../util/errors.js';
import { parseJsonText } from '../util/validate.js';
import { loadProfile } from '../qemu/profile.js';
import { requireGuestImage } from '../image/image-builder.js';
import { Lab } from '../qemu/lab.js';
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
  if (args.target === 'inner') {
    // The inner QEMU of a running nested lab host: its socket is in the guest, so the lab's controller relays.
    const reply = await controlCall({
      lab: args.lab,
      command: 'inner-qmp',
      arguments: { command: args.command, ...(parsed ? { arguments: parsed } : {}) },
      timeoutSec: args.timeout + 5,
    });
    print((reply as { return: unknown }).return);
    return 0;
  }
  const isSocket = existsSync(args.target) && statSync(args.target).isSocket();
  if (isSocket) {
    const qmp = await QmpClient.connect(args.target);
    try {
      print(await qmp.execute(args.command, parsed, args.timeout * 1000));
    } finally {
      await qmp.close();
    }
    return 0;
  }
  const profile = await loadProfile(args.target);
  const image = await requireGuestImage(profile.guest.image);
  const lab = await Lab.launch(profile, { image, progress: new StderrProgress(), extraArgs: ['-S'] });
  try {
    print(await lab.qmp.execute(args.command, parsed, args.timeout * 1000));
  } finally {
    await lab.shutdown('quit');
    await lab.dispose();
  }
  return 0;
}

function print(value: unknown): void {
  process.stdout.write(typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`);
}
