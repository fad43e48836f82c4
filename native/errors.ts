/** The root of burrow's error hierarchy, and the error for failed system calls. */

/** Every error burrow raises on purpose. `code` is stable and machine-readable. */
export class BurrowError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A failed system call: names the call, the errno and the object it was acting on. */
export class SyscallError extends BurrowError {
  readonly syscall: string;
  readonly errno: number;
  readonly path?: string;
  readonly netns?: string;
  readonly ifname?: string;
  constructor(fields: { syscall: string; errno: number; code: string; message: string; path?: string; netns?: string; ifname?: string }, options?: { cause?: unknown }) {
    super(fields.code, fields.message, options);
    this.syscall = fields.syscall;
    this.errno = fields.errno;
    this.path = fields.path;
    this.netns = fields.netns;
    this.ifname = fields.ifname;
  }
}

/** True when `err` carries one of the given errno codes ("ENOENT", ...). */
export function hasCode(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as { code?: string }).code ?? '');
}

/**
 * Teardown that did not complete: every step that failed, each named (`step`) with its own error,
 * so that one failure never hides another. Teardown carries on past each failure and throws this
 * once at the end.
 */
export class TeardownError extends AggregateError {
  readonly code = 'ETEARDOWN';
  readonly steps: string[];
  constructor(what: string, failures: Array<{ step: string; error: unknown }>) {
    const text = failures.map((f) => `${f.step}: ${f.error instanceof Error ? f.error.message : String(f.error)}`);
    super(failures.map((f) => f.error), `teardown of ${what} is incomplete: ${text.join('; ')}`);
    this.name = 'TeardownError';
    this.steps = failures.map((f) => f.step);
  }
}
