/**
 * SIGINT/SIGTERM while a lab runs: tear the lab down (reap QEMU, keep the
 * artifacts), then exit with 128+signal. A second signal exits at once; QEMU
 * still dies with us through its parent-death signal.
 */
let interruptedBy: NodeJS.Signals | undefined;

/** The exit code an interrupted controller must end with (128 + signal), if it was interrupted. */
export function interruptExitCode(): number | undefined {
  return interruptedBy ? 128 + (interruptedBy === 'SIGINT' ? 2 : 15) : undefined;
}

export function installInterruptHandlers(teardown: (signal: NodeJS.Signals) => Promise<void>): () => void {
  let tearingDown = false;
  const handler = (signal: NodeJS.Signals) => {
    const code = 128 + (signal === 'SIGINT' ? 2 : 15);
    interruptedBy = signal;
    if (tearingDown) process.exit(code);
    tearingDown = true;
    process.stderr.write(`\ntcelab: ${signal} received, tearing the lab down\n`);
    teardown(signal).finally(() => process.exit(code));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/**
 * Runs work that takes an AbortSignal (a scenario run, a suite) with SIGINT/SIGTERM aborting it: the work
 * winds down on its own terms (quits its labs, judges and reports what it measured), then the controller exits
 * with 128+signal. The library code never installs handlers or calls process.exit itself.
 */
export async function abortingOnSignals<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let running: Promise<T> | undefined;
  const uninstall = installInterruptHandlers(async (signal) => {
    controller.abort(new Error(`${signal} received`));
    await running?.catch(() => {});
  });
  try {
    running = work(controller.signal);
    return await running;
  } finally {
    uninstall();
  }
}
