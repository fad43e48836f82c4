/**
 * Teardown as a stack, the bridge plugin's pattern: each step that set something up pushes its
 * undo; `run` undoes in reverse, goes on past failures and reports them together. A step may
 * carry a tag (a CNI attachment) so that what failed can be retried later (`system gc`).
 */
export interface UndoFailure<T> {
  step: string;
  error: unknown;
  tag?: T;
}

export class UndoStack<T = never> {
  private steps: Array<{ step: string; run: () => Promise<void> | void; tag?: T }> = [];

  push(step: string, run: () => Promise<void> | void, tag?: T): void {
    this.steps.push({ step, run, tag });
  }

  /**
   * fds that hold something for the container's life (its namespaces, reserved host ports): closed
   * by steps of this stack, or kept open by a native holder that takes the container over.
   */
  readonly held: number[] = [];

  hold(fds: Iterable<number>): void {
    for (const fd of fds) if (fd >= 0) this.held.push(fd);
  }

  get size(): number {
    return this.steps.length;
  }

  /** Undoes every step, last first; resolves to the failures (empty: all undone). Idempotent. */
  async run(): Promise<Array<UndoFailure<T>>> {
    const failures: Array<UndoFailure<T>> = [];
    const steps = this.steps.reverse();
    this.steps = [];
    for (const s of steps) {
      try {
        await s.run();
      } catch (error) {
        failures.push({ step: s.step, error, ...(s.tag !== undefined ? { tag: s.tag } : {}) });
      }
    }
    return failures;
  }
}
