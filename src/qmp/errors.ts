import { TcelabError } from '../util/errors.js';

/** The peer answered a command with {"error": {"class", "desc"}}. */
export class QmpCommandError extends TcelabError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
    readonly peer: string,
  ) {
    super(`${peer} command ${command} failed`, `${errorClass}: ${desc}`);
    this.name = 'QmpCommandError';
  }
}

/** No reply within the command's timeout. The connection stays usable. */
export class QmpTimeoutError extends TcelabError {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
    peer: string,
  ) {
    super(
      `${peer} command ${command}`,
      `no reply within ${timeoutMs} ms`,
      `the ${peer} peer may be hung; see the transcript in the run's artifacts`,
    );
    this.name = 'QmpTimeoutError';
  }
}

/** The socket closed (or was closed) while a reply or event was awaited. */
export class QmpConnectionClosedError extends TcelabError {
  constructor(
    readonly waitingFor: string,
    peer: string,
    reason: string,
  ) {
    super(`${peer} connection closed while waiting for ${waitingFor}`, reason);
    this.name = 'QmpConnectionClosedError';
  }
}

/** The peer sent something that is not a well-formed message of the protocol. */
export class QmpProtocolError extends TcelabError {
  constructor(peer: string, why: string) {
    super(`${peer} protocol error`, why);
    this.name = 'QmpProtocolError';
  }
}
