import { loadProfile } from '../qemu/profile.js';
import { Lab } from '../lab/lab.js';
import { ensureGuestImage } from '../image/ensure-guest-image.js';
import { StderrProgress } from '../util/progress.js';
import { formatMs } from './output.js';
import { installInterruptHandlers } from './interrupt.js';

/** `tcelab run [profile]`: boot the lab, show the guest is up, shut it down, print a summary. */
export async function runBootCommand(args: { profile: string; json: boolean; shutdown: 'powerdown' | 'quit' }): Promise<number> {
  const progress = new StderrProgress();
  const profile = await loadProfile(args.profile);
  const image = await ensureGuestImage(profile, progress);
  const lab = await Lab.launch(profile, { image, progress });
  const uninstall = installInterruptHandlers(async () => {
    lab.failed = true;
    await lab.dispose();
  });
  try {
    const init = await lab.waitForGuestInit(progress);
    // The guest is up when its agent answers (a cold lab then saves the machine for the next one).
    const agentInfo = await (await lab.agent(progress)).info();
    const spawnToAgentMs = Date.now() - lab.spawnedAt;
    progress.info(
      `guest is up: kernel ${init.kernelRelease} (${init.machine}), QEMU ${lab.qmp.qemuVersion}, spawn to agent ${formatMs(spawnToAgentMs)}`,
    );
    const status = await lab.qmp.queryStatus();
    const report = await lab.shutdown(args.shutdown, progress);
    const clean = report.effective === args.shutdown && report.exit.code === 0;
    if (!clean) lab.failed = true;
    const summary = {
      profile: profile.name,
      qemuVersion: lab.qmp.qemuVersion,
      guestKernel: init.kernelRelease,
      spawnToInitMs: init.spawnToInitMs,
      spawnToAgentMs,
      pageSize: agentInfo.pageSize,
      start: lab.start,
      statusWhileUp: status.status,
      shutdown: report,
      clean,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      process.stdout.write(
        `lab ${profile.name}: ${clean ? 'PASS' : 'FAIL'}\n` +
          `  guest kernel:    ${init.kernelRelease}\n` +
          `  QEMU:            ${lab.qmp.qemuVersion} (${profile.qemu.accel})\n` +
          `  started:         ${describeLabStart(lab.start)}\n` +
          `  spawn to agent:  ${formatMs(spawnToAgentMs)} (${lab.start.how === 'restored' ? 'restore' : `boot to init ${formatMs(init.spawnToInitMs)}`})\n` +
          `  shutdown:        ${report.requested} → ${report.effective}, ${formatMs(report.durationMs)}, ` +
          `SHUTDOWN event ${report.shutdownEvent ? JSON.stringify(report.shutdownEvent) : 'not seen'}, exit ${report.exit.signal ?? report.exit.code}\n` +
          (report.escalations.length ? `  escalations:     ${report.escalations.join('; ')}\n` : ''),
      );
    }
    return clean ? 0 : 1;
  } catch (err) {
    lab.failed = true;
    throw err;
  } finally {
    uninstall();
    const kept = await lab.dispose();
    if (kept) process.stderr.write(`artifacts kept in ${kept}\n`);
  }
}

function describeLabStart(start: Lab['start']): string {
  if (start.how === 'restored') return `restored from snapshot ${start.snapshot}`;
  return `cold (${start.why})${start.saved ? `; saved snapshot ${start.saved}` : ''}`;
}
