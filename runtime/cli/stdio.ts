/**
 * Writing the CLI's output without `process.stdout`. Node builds process.stdout (its stream
 * classes, a pipe or TTY handle) on first touch, which costs more than the rest of
 * `burrow --version`. Node writes to files, pipes and TTYs synchronously on Linux anyway, so a
 * plain write(2) on the fd gives the same bytes in the same order. If the fd is non-blocking and
 * full (EAGAIN), the rest goes through Node's stream, which waits for it. A reader that went away
 * (EPIPE) ends the output quietly, as `burrow ps | head -1` expects.
 */
import fs from 'node:fs';

type Stream = 'stdout' | 'stderr';

/** A writer for fd 1 or 2 with the behaviour above. */
export function fdWriter(fd: 1 | 2): (s: string) => void {
  const stream: Stream = fd === 1 ? 'stdout' : 'stderr';
  let mode: 'fd' | 'stream' | 'closed' = 'fd';
  return (s: string) => {
    if (mode === 'closed' || s === '') return;
    if (mode === 'stream') {
      process[stream].write(s);
      return;
    }
    let buf = Buffer.from(s);
    while (buf.length) {
      let n: number;
      try {
        n = fs.writeSync(fd, buf);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') {
          mode = 'closed';
          return;
        }
        if (code !== 'EAGAIN') throw e;
        mode = 'stream';
        process[stream].write(buf);
        return;
      }
      buf = buf.subarray(n);
    }
  };
}
