/**
 * An in-memory LinkDevice for tests: frames sent are collected (copied, since the stack passes
 * views), and `inject` delivers a batch of frames as a TAP read would.
 */
import type { LinkDevice } from './tap_device.js';

export class MemoryLink implements LinkDevice {
  readonly stats = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, txDropped: 0, rxBatches: 0 };
  readonly sent: Buffer[] = [];
  private onFrame: ((f: Buffer) => void) | null = null;
  private onBatch: (() => void) | null = null;
  /** Called for each frame sent, after it is recorded. */
  onSend: ((frame: Buffer) => void) | null = null;

  start(onFrame: (frame: Buffer) => void, onBatch: () => void): void {
    this.onFrame = onFrame;
    this.onBatch = onBatch;
  }

  send(parts: Buffer[]): void {
    const f = Buffer.concat(parts);
    this.stats.txFrames++;
    this.stats.txBytes += f.length;
    this.sent.push(f);
    this.onSend?.(f);
  }

  inject(frames: Buffer[]): void {
    this.stats.rxBatches++;
    for (const f of frames) {
      this.stats.rxFrames++;
      this.onFrame?.(f);
    }
    this.onBatch?.();
  }

  /** Removes and returns what was sent so far. */
  take(): Buffer[] {
    return this.sent.splice(0);
  }

  close(): void {
    this.onFrame = null;
  }
}
