import { TcelabError } from '../util/errors.js';

/*
 * The protocol's errors, for every peer. Those named Qmp… are raised for the agent and the control socket too; they
 * keep the name because the control socket reports a TcelabError's name as its error class: clients see it.
 */

/** A peer (QEMU's QMP or the guest agent) answered a command with {"error": {"class", "desc"}}. */
export class PeerCommandError extends TcelabError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
    readonly peer: string,
  ) {
    super(`${peer} command ${command} failed`, `${errorClass}: ${desc}`);
    this.name = 'PeerCommandError';
  }
}

/**
 * QEMU refused a QMP command (errorClass is QMP's: GenericError, DeviceNotFound…). It lives with the protocol, not
 * in qmp/, because it is the connection's default for a vocabulary that names none (QMP, the lab's control socket).
 */
export class QmpCommandError extends PeerCommandError {
  constructor(command: string, errorClass: string, desc: string, peer: string) {
    super(command, errorClass, desc, peer);
    this.name = 'QmpCommandError';
  }
}

/** How a connection turns an error reply into an exception: each vocabulary names its own. */
export type CommandErrorFactory = (command: string, errorClass: string, desc: string, peer: string) => PeerCommandError;

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
