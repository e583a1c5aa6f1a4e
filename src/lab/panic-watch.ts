import type { QemuProcess } from '../qemu/qemu-process.js';
import { explainingLines, knownCauseHint } from '../qemu/stderr-diagnosis.js';
import type { QmpClient } from '../qmp/qmp-client.js';

/**
 * Calls `onPanic` when the guest kernel panicked (a console line or GUEST_PANICKED) or QEMU stopped the machine on an
 * error it cannot recover from; perhaps more than once: the listener keeps the first.
 */
export function watchForPanic(qemu: QemuProcess, qmp: QmpClient, onPanic: (what: string) => void): void {
  qemu.console.on('panic', (line: string) => onPanic(line));
  // A machine QEMU stopped on an error it cannot recover from (an unknown KVM exit) runs no more.
  const ifStoppedForGood = () =>
    void qmp.queryStatus().then(
      (st) => {
        if (st.status !== 'internal-error') return;
        const stderr = qemu.stderr();
        const kvm = stderr.split('\n').filter((l) => /^KVM: /.test(l));
        const said = kvm.length ? kvm.slice(-2).join(' | ') : explainingLines(stderr);
        const known = knownCauseHint(stderr);
        const reason = `internal-error${said ? ` (${said})` : ''}${known ? `: ${known}` : ''}`;
        qemu.console.halt(reason);
        onPanic(`QEMU stopped the machine: ${reason}`);
      },
      () => {},
    );
  qmp.onEvent((e) => {
    if (e.event === 'GUEST_PANICKED') onPanic(`GUEST_PANICKED ${JSON.stringify(e.data)}`);
    if (e.event === 'STOP') ifStoppedForGood();
  });
  // Its STOP may have come before this watch: while QMP's greeting was answered (measured: an inner KVM guest whose
  // first entry fails stops 1.4 s after spawn, 2 ms before qmp_capabilities returned). Asked once now.
  ifStoppedForGood();
}
