import { PeerCommandError } from '../protocol/errors.js';

/** The guest agent refused a command; errorClass is the errno name of the failed call (EAGAIN, ENOENT, EBUSY…). */
export class AgentCommandError extends PeerCommandError {
  constructor(command: string, errorClass: string, desc: string, peer: string) {
    super(command, errorClass, desc, peer);
    this.name = 'AgentCommandError';
  }
}
