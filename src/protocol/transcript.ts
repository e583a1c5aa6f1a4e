import { createWriteStream, type WriteStream } from 'node:fs';

/**
 * Append-only record of everything that crossed a QMP or agent socket, kept
 * with the run's artifacts: `<ISO time> <dir> <line>` where dir is `>` (sent),
 * `<` (received) or `!` (a protocol note: timeout, malformed input, close).
 */
export class Transcript {
  private stream: WriteStream | undefined;

  constructor(readonly path: string | undefined) {
    if (path) this.stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
    // A full disk must not crash the controller: the transcript is best effort.
    this.stream?.on('error', () => {
      this.stream = undefined;
    });
  }

  record(dir: '>' | '<' | '!', line: string): void {
    this.stream?.write(`${new Date().toISOString()} ${dir} ${line}\n`);
  }

  async close(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    if (s) await new Promise<void>((resolve) => s.end(resolve));
  }
}
