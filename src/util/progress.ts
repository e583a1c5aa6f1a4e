/**
 * Progress for long operations. On a TTY it redraws one status line with the
 * elapsed time; elsewhere (CI logs) it prints one line per step start and end.
 * Everything goes to stderr so that --json output on stdout stays clean.
 */
export interface Progress {
  /**
   * Runs fn, showing `label` while it runs and its duration when done; fn may
   * report a detail and a fraction done (0..1), drawn as a bar on a terminal.
   */
  step<T>(label: string, fn: (update: (detail: string, fraction?: number) => void) => Promise<T>): Promise<T>;
  info(line: string): void;
}

const useColor = (): boolean => !process.env.NO_COLOR && process.stderr.isTTY === true;

function paint(code: string, text: string): string {
  return useColor() ? `\x1b[${code}m${text}\x1b[0m` : text;
}

export class StderrProgress implements Progress {
  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  async step<T>(label: string, fn: (update: (detail: string, fraction?: number) => void) => Promise<T>): Promise<T> {
    const started = Date.now();
    const tty = this.out.isTTY === true;
    let detail = '';
    let fraction: number | undefined;
    const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
    const draw = () => {
      if (!tty) return;
      const width = 20;
      const bar =
        fraction === undefined ? '' : ` [${'#'.repeat(Math.round(fraction * width)).padEnd(width, '.')}] ${Math.floor(fraction * 100)}%`;
      const cols = this.out.columns ?? 100;
      const line = `${label}${bar}${detail ? ` — ${detail}` : ''} (${seconds()} s)`;
      this.out.write(`\r\x1b[K${paint('36', '…')} ${line.length > cols - 4 ? `${line.slice(0, cols - 5)}…` : line}`);
    };
    if (!tty) this.out.write(`… ${label}\n`);
    const timer = tty ? setInterval(draw, 200) : undefined;
    timer?.unref();
    draw();
    let lastPrinted = 0;
    const update = (d: string, f?: number) => {
      detail = d;
      fraction = f === undefined ? undefined : Math.max(0, Math.min(1, f));
      // Without a TTY, print details at most every 5 s so CI logs stay readable.
      if (!tty && Date.now() - lastPrinted > 5000) {
        lastPrinted = Date.now();
        this.out.write(`    ${label}: ${f === undefined ? '' : `${Math.floor(f * 100)}% `}${d}\n`);
      }
    };
    try {
      const result = await fn(update);
      if (timer) clearInterval(timer);
      this.out.write(`${tty ? '\r\x1b[K' : ''}${paint('32', '✓')} ${label} (${seconds()} s)\n`);
      return result;
    } catch (err) {
      if (timer) clearInterval(timer);
      this.out.write(`${tty ? '\r\x1b[K' : ''}${paint('31', '✗')} ${label} (${seconds()} s)\n`);
      throw err;
    }
  }

  info(line: string): void {
    this.out.write(`${line}\n`);
  }
}

/** For library use and tests: runs steps without printing. */
export const silentProgress: Progress = {
  step: (_label, fn) => fn(() => {}),
  info: () => {},
};
