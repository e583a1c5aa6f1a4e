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

  /**
   * Resolves once everything recorded so far is in the file: the stream writes in the background, so a reader of the
   * file while the connection lives (a test, a person tailing it) can otherwise see it behind (seen under load).
   */
  flushed(): Promise<void> {
    const s = this.stream;
    return s ? new Promise<void>((resolve) => s.write('', () => resolve())) : Promise.resolve();
  }

  async close(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    if (s) await new Promise<void>((resolve) => s.end(resolve));
  }
}
