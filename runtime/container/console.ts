/**
 * A container's I/O in its supervisor, as conmon does it for podman: the command's output (its
 * stdout and stderr pipes, or the master of its terminal with -t) goes to the k8s-file log, to
 * the caller's own stdout/stderr for a foreground run, and to every attached client; input from
 * attached clients goes to the command's stdin (-i) or terminal. Clients attach on a unix socket
 * (runtime/container/attach_proto.ts) and are told the exit code once the container ended and was cleaned
 * up. A client that cannot keep up is dropped; a foreground caller slows the command down instead.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tty from 'node:tty';
import type { Readable, Writable } from 'node:stream';
import { setWinsize } from '../../native/mod.js';
import { AttachProtocolError, encodeFrame, exitFrame, Frame, FrameDecoder, parseResize } from './attach_proto.js';
import { formatChunk, logTimestamp, type LogStream } from './k8slog.js';

/** An attached client further behind than this is disconnected. */
const CLIENT_BACKLOG = 8 << 20;

export interface ConsoleOptions {
  logFile: string;
  socketPath: string;
  tty: boolean;
  /** -i: the command's stdin stays open for attached clients. */
  interactive: boolean;
  name: string;
  /** A foreground run: output also to this process's stdout and stderr. */
  local: boolean;
  /** Sends a signal to the container (a client's SIGNAL frame). */
  signal: (sig: NodeJS.Signals) => void;
}

/** What a native holder takes over from a console (the fds stay open: the process execs next). */
export interface ConsoleFds {
  log: number;
  listen: number;
  stdout?: number;
  stderr?: number;
  stdin?: number;
  master?: number;
  /** Clients that said HELLO, and those that only had their INFO. */
  clients: number[];
  informed: number[];
}

const fdOf = (s: unknown): number | undefined => {
  const fd = (s as { _handle?: { fd?: number } } | null)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
};

interface Client {
  sock: net.Socket;
  decoder: FrameDecoder;
  hello: boolean;
}

function nowNs(): bigint {
  // wall-clock milliseconds, with the monotonic clock's finer digits below them
  return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
}

export class ContainerConsole {
  private readonly clients = new Set<Client>();
  private server: net.Server | null = null;
  private logFd: number;
  private input: Writable | null = null;
  private masterFd = -1;
  private master: tty.ReadStream | null = null;
  private size: { rows: number; cols: number } | null = null;
  private firstHello!: () => void;
  /** Resolves when the first client said hello (run -it and start -a wait for it to go). */
  readonly attached: Promise<void> = new Promise((r) => (this.firstHello = r));
  private outputDone: Promise<void> = Promise.resolve();

  private constructor(private readonly o: ConsoleOptions) {
    this.logFd = fs.openSync(o.logFile, 'a', 0o600);
  }

  /** Opens the log and listens for clients. */
  static async open(o: ConsoleOptions): Promise<ContainerConsole> {
    const c = new ContainerConsole(o);
    fs.mkdirSync(path.dirname(o.socketPath), { recursive: true, mode: 0o700 });
    fs.rmSync(o.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      const server = net.createServer((sock) => c.onClient(sock));
      server.once('error', reject);
      server.listen(o.socketPath, () => {
        server.removeListener('error', reject);
        server.on('error', () => undefined);
        resolve();
      });
      c.server = server;
    });
    return c;
  }

  /** The command's pipes (no terminal): stdout and stderr, and stdin with -i. */
  connectPipes(stdout: Readable | null, stderr: Readable | null, stdin: Writable | null): void {
    const done = [stdout, stderr].map((s, i) => s ? this.pump(s, i === 0 ? 'stdout' : 'stderr') : Promise.resolve());
    this.outputDone = Promise.all(done).then(() => undefined);
    if (stdin) {
      stdin.on('error', () => undefined); // the command closed its stdin
      this.input = stdin;
    }
  }

  /** The terminal's master (-t): its output is the container's stdout. */
  connectTerminal(fd: number): void {
    this.masterFd = fd;
    if (this.size) this.resize(this.size.rows, this.size.cols);
    const m = new tty.ReadStream(fd);
    this.master = m;
    this.outputDone = new Promise<void>((resolve) => {
      m.on('data', (d: Buffer) => this.emit('stdout', d, m));
      // EIO once the last holder of the slave is gone: that is the end of the output
      m.on('error', () => resolve());
      m.on('end', () => resolve());
      m.on('close', () => resolve());
    });
    if (this.o.interactive) this.input = m;
  }

  private pump(s: Readable, stream: LogStream): Promise<void> {
    return new Promise((resolve) => {
      s.on('data', (d: Buffer) => this.emit(stream, d, s));
      s.on('end', resolve);
      s.on('error', () => resolve());
      s.on('close', resolve);
    });
  }

  private emit(stream: LogStream, chunk: Buffer, source: Readable): void {
    try {
      fs.writeSync(this.logFd, formatChunk(stream, chunk, logTimestamp(nowNs())));
    } catch {
      // a full disk loses log lines, never the container
    }
    if (this.o.local) {
      const sink = stream === 'stdout' ? process.stdout : process.stderr;
      if (!sink.destroyed && !sink.write(chunk)) {
        source.pause();
        sink.once('drain', () => source.resume());
      }
    }
    const frame = encodeFrame(stream === 'stdout' ? Frame.STDOUT : Frame.STDERR, chunk);
    for (const c of this.clients) {
      if (!c.hello) continue;
      if (c.sock.writableLength > CLIENT_BACKLOG) {
        c.sock.destroy();
        this.clients.delete(c);
        continue;
      }
      c.sock.write(frame);
    }
  }

  private resize(rows: number, cols: number): void {
    if (!rows || !cols) return;
    this.size = { rows, cols };
    if (this.masterFd < 0) return;
    try {
      setWinsize(this.masterFd, rows, cols);
    } catch {
      // the terminal is gone
    }
  }

  /** The size the first client asked for (the terminal starts with it). */
  windowSize(): { rows: number; cols: number } | null {
    return this.size;
  }

  private onClient(sock: net.Socket): void {
    const c: Client = { sock, decoder: new FrameDecoder(), hello: false };
    this.clients.add(c);
    sock.on('error', () => undefined);
    sock.on('close', () => this.clients.delete(c));
    sock.write(encodeFrame(Frame.INFO, JSON.stringify({ tty: this.o.tty, stdin: this.o.interactive, name: this.o.name })));
    sock.on('data', (d: Buffer) => {
      let frames;
      try {
        frames = c.decoder.push(d);
      } catch (err) {
        if (err instanceof AttachProtocolError) {
          sock.destroy();
          return;
        }
        throw err;
      }
      for (const f of frames) this.onFrame(c, f.type, f.payload);
    });
  }

  private onFrame(c: Client, type: number, payload: Buffer): void {
    try {
      switch (type) {
        case Frame.HELLO: {
          const h = JSON.parse(payload.toString()) as { rows?: number; cols?: number };
          c.hello = true;
          if (this.o.tty && h.rows && h.cols) this.resize(h.rows, h.cols);
          this.firstHello();
          break;
        }
        case Frame.STDIN:
          if (this.input && !this.input.destroyed) this.input.write(payload);
          break;
        case Frame.STDIN_EOF:
          // a pipe gets its EOF; a terminal reads ctrl-d as the user typed it
          if (this.input && !this.o.tty) this.input.end();
          break;
        case Frame.RESIZE: {
          const { rows, cols } = parseResize(payload);
          if (this.o.tty) this.resize(rows, cols);
          break;
        }
        case Frame.SIGNAL: {
          const sig = payload.toString() as NodeJS.Signals;
          if (sig in os.constants.signals) this.o.signal(sig);
          break;
        }
        default:
          c.sock.destroy();
      }
    } catch {
      c.sock.destroy(); // a malformed frame: that client goes, the container stays
    }
  }

  /**
   * The fds a native holder needs to go on from here (runtime/container/holder.ts), once what is
   * queued for clients and for the command's input is written (at most `ms`); null if this console
   * cannot be handed over (a foreground run's, or a write still pending).
   */
  async handOver(pipes: { stdout: Readable | null; stderr: Readable | null; stdin: Writable | null }, ms = 1000): Promise<ConsoleFds | null> {
    if (this.o.local || !this.server) return null;
    const pending = () => [...[...this.clients].map((c) => c.sock), ...(this.input && 'writableLength' in this.input ? [this.input] : [])].filter((w) => !w.destroyed && w.writableLength > 0);
    const until = Date.now() + ms;
    while (pending().length && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    if (pending().length) return null;
    const listen = fdOf(this.server);
    if (listen === undefined || this.logFd < 0) return null;
    const out: ConsoleFds = { log: this.logFd, listen, clients: [], informed: [] };
    if (this.masterFd >= 0) out.master = this.masterFd;
    else {
      out.stdout = fdOf(pipes.stdout);
      out.stderr = fdOf(pipes.stderr);
      if (this.o.interactive) out.stdin = fdOf(pipes.stdin);
    }
    for (const c of this.clients) {
      const fd = fdOf(c.sock);
      if (fd === undefined || c.sock.destroyed) continue;
      (c.hello ? out.clients : out.informed).push(fd);
    }
    return out;
  }

  /** Waits (at most `ms`) for the rest of the command's output. */
  async drain(ms = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.outputDone, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** Tells every client the exit code (after cleanup), then stops listening and closes the log. */
  async finish(code: number): Promise<void> {
    this.server?.close();
    fs.rmSync(this.o.socketPath, { force: true });
    const frame = exitFrame(code);
    await Promise.all([...this.clients].map((c) => new Promise<void>((resolve) => {
      if (c.sock.destroyed) return resolve();
      c.sock.end(frame, () => resolve());
      setTimeout(resolve, 2000).unref();
    })));
    this.close();
  }

  /** Releases everything without telling clients (the container never started). */
  close(): void {
    this.server?.close();
    this.server = null;
    fs.rmSync(this.o.socketPath, { force: true });
    for (const c of this.clients) c.sock.destroy();
    this.clients.clear();
    if (this.master) this.master.destroy();
    else if (this.masterFd >= 0) fs.closeSync(this.masterFd);
    this.master = null;
    this.masterFd = -1;
    if (this.logFd >= 0) fs.closeSync(this.logFd);
    this.logFd = -1;
  }
}
