/**
 * The TAP end of the userspace stack: reads batches of frames from a non-blocking TAP fd (opened
 * with IFF_VNET_HDR, so each frame starts with a virtio-net header) and writes frames gathered
 * from parts. Reads land back to back in one reused buffer: a frame passed to the handler is a
 * view that is overwritten by the next batch, so the stack copies what it keeps.
 */
import fs from 'node:fs';
import { readFrames, unwatch, watchReadable, writeFrame } from '../../native/mod.js';

/** The largest frame a TAP hands over: a 64 KiB GSO super-frame plus headers. */
export const FRAME_MAX = 65_550 + 12;
const BATCH_BYTES = 4 << 20;
const BATCH_FRAMES = 256;

export interface LinkDevice {
  /** Starts delivering frames; `onBatch` runs after each batch (for one flush per batch). */
  start(onFrame: (frame: Buffer) => void, onBatch: () => void): void;
  send(parts: Buffer[]): void;
  close(): void;
  readonly stats: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; txDropped: number; rxBatches: number };
}

export class TapDevice implements LinkDevice {
  readonly stats = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, txDropped: 0, rxBatches: 0 };
  private readonly buf = Buffer.allocUnsafe(BATCH_BYTES);
  private readonly lens = new Uint32Array(BATCH_FRAMES);
  private closed = false;
  private watching = false;

  /** Takes ownership of `fd` (closed by close()). */
  constructor(readonly fd: number) {}

  start(onFrame: (frame: Buffer) => void, onBatch: () => void): void {
    this.watching = true;
    watchReadable(this.fd, () => {
      if (this.closed) return;
      let n: number;
      try {
        n = readFrames(this.fd, this.buf, this.lens, FRAME_MAX);
      } catch {
        this.close(); // the device went away (its namespace was destroyed)
        return;
      }
      if (!n) return;
      this.stats.rxBatches++;
      let off = 0;
      for (let i = 0; i < n; i++) {
        const len = this.lens[i];
        this.stats.rxFrames++;
        this.stats.rxBytes += len;
        onFrame(this.buf.subarray(off, off + len));
        off += len;
      }
      onBatch();
    });
  }

  send(parts: Buffer[]): void {
    if (this.closed) return;
    let w: number;
    try {
      w = writeFrame(this.fd, parts);
    } catch {
      w = -1;
    }
    if (w < 0) this.stats.txDropped++;
    else {
      this.stats.txFrames++;
      this.stats.txBytes += w;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watching) unwatch(this.fd);
    fs.closeSync(this.fd);
  }
}
