/**
 * The user's end of an interactive container: `burrow attach`, `run -it`, `start -a` (through the
 * supervisor's attach socket) and `exec -it` (straight on the terminal's master). The user's
 * terminal is raw while keys go to the container and is restored on every way out (exit, detach,
 * error, signal); window-size changes are passed on; without a terminal, the signals this process
 * gets are passed to the container (podman's --sig-proxy).
 */
import fs from 'node:fs';
import net from 'node:net';
import tty from 'node:tty';
import { setWinsize } from '../../native/mod.js';
import { AttachProtocolError, DetachMatcher, encodeFrame, Frame, FrameDecoder, parseExit, resizeFrame } from './attach_proto.js';

export interface TerminalResult {
  /** The container's (or exec'd command's) exit code; null when the other end went away without one. */
  code: number | null;
  detached: boolean;
}

interface Remote {
  send(d: Buffer): void;
  eof(): void;
  resize(rows: number, cols: number): void;
  signal(sig: NodeJS.Signals): void;
  close(): void;
}

interface Hooks {
  out(stream: 'stdout' | 'stderr', d: Buffer): void;
  done(code: number | null): void;
}

const PROXIED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

function terminalSize(): { rows: number; cols: number } {
  const t = process.stdout.isTTY ? process.stdout : process.stderr.isTTY ? process.stderr : null;
  return t ? { rows: t.rows ?? 0, cols: t.columns ?? 0 } : { rows: 0, cols: 0 };
}

/**
 * Runs the local side until the remote ends or the detach keys are typed. `tty`: the remote is a
 * terminal; `stdin`: the user's input goes to it.
 */
function runTerminal(connect: (hooks: Hooks) => Remote, o: { tty: boolean; stdin: boolean; detachKeys: Buffer; sigProxy: boolean }): Promise<TerminalResult> {
  const raw = o.tty && o.stdin && process.stdin.isTTY === true;
  return new Promise((resolve) => {
    let finished = false;
    const cleanups: Array<() => void> = [];
    const restore = () => {
      if (raw) {
        try {
          (process.stdin as tty.ReadStream).setRawMode(false);
        } catch {
          // stdin is gone
        }
      }
    };
    const finish = (r: TerminalResult) => {
      if (finished) return;
      finished = true;
      for (const c of cleanups.splice(0)) c();
      restore();
      remote.close();
      resolve(r);
    };
    const remote = connect({
      out: (stream, d) => (stream === 'stdout' ? process.stdout : process.stderr).write(d),
      done: (code) => {
        // let what was written reach the terminal before the caller exits
        process.stdout.write('', () => finish({ code, detached: false }));
      },
    });
    if (raw) {
      (process.stdin as tty.ReadStream).setRawMode(true);
      process.on('exit', restore);
      cleanups.push(() => process.off('exit', restore));
    }
    if (o.tty) {
      const onResize = () => {
        const s = terminalSize();
        if (s.rows && s.cols) remote.resize(s.rows, s.cols);
      };
      process.on('SIGWINCH', onResize);
      cleanups.push(() => process.off('SIGWINCH', onResize));
    }
    // Signals: with a raw terminal, ctrl-c is a byte for the container; a kill of this process,
    // and every signal without a terminal, goes to the container as podman's --sig-proxy does.
    for (const sig of PROXIED) {
      const h = () => (o.sigProxy ? remote.signal(sig) : finish({ code: null, detached: false }));
      process.on(sig, h);
      cleanups.push(() => process.off(sig, h));
    }
    if (o.stdin) {
      const matcher = new DetachMatcher(o.detachKeys);
      const onData = (d: Buffer) => {
        const r = matcher.push(d);
        if (r.forward.length) remote.send(r.forward);
        if (r.detach) finish({ code: null, detached: true });
      };
      const onEnd = () => remote.eof();
      process.stdin.on('data', onData);
      process.stdin.on('end', onEnd);
      process.stdin.resume();
      cleanups.push(() => {
        process.stdin.off('data', onData);
        process.stdin.off('end', onEnd);
        process.stdin.pause();
      });
    }
  });
}

/** Attaches to a container's supervisor on `socketPath`. */
export async function attachSocket(socketPath: string, o: { stdin: boolean; detachKeys: Buffer; sigProxy?: boolean }): Promise<TerminalResult> {
  const sock = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const decoder = new FrameDecoder();
  const pending: Array<{ type: number; payload: Buffer }> = [];
  // INFO comes first: whether the container has a terminal and an open stdin
  const info = await new Promise<{ tty: boolean; stdin: boolean }>((resolve, reject) => {
    const onData = (d: Buffer) => {
      try {
        const frames = decoder.push(d);
        if (!frames.length) return;
        sock.off('data', onData);
        const [first, ...rest] = frames;
        if (first.type !== Frame.INFO) throw new AttachProtocolError('the supervisor did not start with INFO');
        pending.push(...rest);
        resolve(JSON.parse(first.payload.toString()));
      } catch (err) {
        reject(err);
      }
    };
    sock.on('data', onData);
    sock.once('close', () => reject(new AttachProtocolError('the container\'s supervisor closed the connection')));
  }).catch((err) => {
    sock.destroy();
    throw err;
  });
  sock.removeAllListeners('close');
  const stdin = o.stdin && info.stdin;
  return runTerminal((hooks) => {
    let code: number | null = null;
    const handle = (f: { type: number; payload: Buffer }) => {
      if (f.type === Frame.STDOUT) hooks.out('stdout', f.payload);
      else if (f.type === Frame.STDERR) hooks.out('stderr', f.payload);
      else if (f.type === Frame.EXIT) code = parseExit(f.payload);
    };
    for (const f of pending) handle(f);
    sock.on('data', (d: Buffer) => {
      try {
        for (const f of decoder.push(d)) handle(f);
      } catch {
        sock.destroy();
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => hooks.done(code));
    const size = info.tty ? terminalSize() : { rows: 0, cols: 0 };
    sock.write(encodeFrame(Frame.HELLO, JSON.stringify({ ...size, stdin })));
    const write = (b: Buffer) => {
      if (!sock.destroyed) sock.write(b);
    };
    return {
      send: (d) => write(encodeFrame(Frame.STDIN, d)),
      eof: () => write(encodeFrame(Frame.STDIN_EOF)),
      resize: (rows, cols) => write(resizeFrame(rows, cols)),
      signal: (sig) => write(encodeFrame(Frame.SIGNAL, sig)),
      close: () => sock.destroy(),
    };
  }, { tty: info.tty, stdin, detachKeys: o.detachKeys, sigProxy: o.sigProxy ?? true });
}

/**
 * `exec -t`: the terminal's master is ours; `exited` is the helper's exit status; `signal` sends
 * to the helper (which passes it on).
 */
export function relayTerminal(masterFd: number, exited: Promise<number>, o: { stdin: boolean; signal: (sig: NodeJS.Signals) => void }): Promise<TerminalResult> {
  const s = terminalSize();
  if (s.rows && s.cols) setWinsize(masterFd, s.rows, s.cols);
  return runTerminal((hooks) => {
    const m = new tty.ReadStream(masterFd);
    let ended = false;
    const outputDone = new Promise<void>((resolve) => {
      m.on('data', (d: Buffer) => hooks.out('stdout', d));
      m.on('error', () => resolve()); // EIO: the command and its children closed the terminal
      m.on('end', () => resolve());
    });
    void exited.then(async (code) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([outputDone, new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
      clearTimeout(timer);
      hooks.done(code);
    });
    return {
      send: (d) => {
        if (!ended) m.write(d);
      },
      eof: () => undefined,
      resize: (rows, cols) => {
        try {
          setWinsize(masterFd, rows, cols);
        } catch {
          // gone
        }
      },
      signal: o.signal,
      close: () => {
        ended = true;
        m.destroy();
      },
    };
  }, { tty: true, stdin: o.stdin, detachKeys: Buffer.alloc(0), sigProxy: true });
}

/** True when `fd` is open (a test of the caller's stdin). */
export function fdOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}
