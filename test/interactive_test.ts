/**
 * Interactive containers in real terminals: tmux runs `burrow run -it`, `attach` and `exec -it`
 * in a pane (send-keys types, capture-pane reads), rootful on the default network and rootless
 * on usernet. The outer terminal must come back exactly as it was (stty -a before and after).
 */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootTest } from './helpers/netns.js';
import { rootArgv, rootSandbox, sync, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowtty';
const tmuxMissing = () => (spawnSync('tmux', ['-V']).status === 0 ? null : 'tmux is not installed (scripts/setup.sh installs it)');
const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/** A tmux server of the test's own, with one pane running `argv` between two `stty -a` snapshots. */
function pane(t: ExecutionContext, argv: string[], size = { x: 100, y: 30 }) {
  const sock = `burrow-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-tty-'));
  const tmux = (...args: string[]) => spawnSync('tmux', ['-L', sock, ...args], { encoding: 'utf8' });
  const script = `stty -a > ${dir}/before; ${argv.map(quote).join(' ')}; echo "EXIT=$?"; stty -a > ${dir}/after; sleep 600`;
  const r = tmux('new-session', '-d', '-s', 'main', '-x', String(size.x), '-y', String(size.y), script);
  if (r.status !== 0) throw new Error(`tmux: ${r.stderr}`);
  t.teardown(() => {
    tmux('kill-server');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const capture = () => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'main').stdout;
  return {
    keys: (...keys: string[]) => void tmux('send-keys', '-t', 'main', ...keys),
    type: (text: string) => void tmux('send-keys', '-t', 'main', '-l', text),
    resize: (x: number, y: number) => void tmux('resize-window', '-t', 'main', '-x', String(x), '-y', String(y)),
    capture,
    /** Waits until the pane shows `re` (after `since` characters of earlier output). */
    async until(re: RegExp, ms = 20_000): Promise<string> {
      const end = Date.now() + ms;
      for (;;) {
        const text = capture();
        if (re.test(text)) return text;
        if (Date.now() > end) throw new Error(`the terminal never showed ${re}:\n${text}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    /** stty -a before and after (once the pane's command is over), the window size aside (the test resizes the window). */
    async stty(): Promise<{ before: string; after: string }> {
      const end = Date.now() + 20_000;
      while (!(fs.existsSync(`${dir}/after`) && fs.statSync(`${dir}/after`).size > 0)) {
        if (Date.now() > end) throw new Error('the pane never got to its stty -a');
        await new Promise((res) => setTimeout(res, 50));
      }
      await new Promise((res) => setTimeout(res, 50)); // stty writes its output in one go; let it finish
      const read = (f: string) => fs.readFileSync(`${dir}/${f}`, 'utf8').replace(/rows \d+; columns \d+; /, '');
      return { before: read('before'), after: read('after') };
    },
  };
}

async function session(t: ExecutionContext, burrow: (args: string[]) => string[], what: string): Promise<void> {
  // run -it: a shell on its own terminal
  const p = pane(t, burrow(['run', '-it', '--rm', '--name', 'tty1', '--', 'sh']));
  await p.until(/^#\s*$/m);
  p.type('tty; echo "TERM=$TERM"; stty size\n');
  await p.until(/^\/dev\/pts\/0\nTERM=xterm\n30 100$/m);
  p.resize(120, 40);
  await new Promise((r) => setTimeout(r, 300));
  p.type('stty size\n');
  await p.until(/^40 120$/m);
  // ctrl-c reaches the container through its terminal: the sleep stops, the shell stays
  p.type('sleep 100; echo after-sleep\n');
  await new Promise((r) => setTimeout(r, 500));
  p.keys('C-c');
  await p.until(/\^C\n#\s*$/m); // the shell's new prompt first: typed ahead, the line would share the prompt's
  p.type('echo "still-$((20+22))"\n');
  await p.until(/^still-42$/m);
  t.notRegex(p.capture(), /^after-sleep$/m, `${what}: ctrl-c interrupted the sleep, not the shell`);
  // the log holds what the terminal showed (until --rm takes it)
  p.type('exit 3\n');
  await p.until(/^EXIT=3$/m);
  const { before, after } = await p.stty();
  t.is(after, before, `${what}: the outer terminal is as it was (stty -a)`);

  // -itd, attach, the detach keys: the container goes on running
  const d = sync(burrow(['run', '-itd', '--name', 'tty2', '--', 'sh']));
  t.is(d.code, 0, d.stderr);
  t.teardown(() => void sync(burrow(['rm', '-f', 'tty2'])));
  const a = pane(t, burrow(['attach', 'tty2']));
  await new Promise((r) => setTimeout(r, 500));
  a.type('echo "attached-$((6*7))"\n');
  await a.until(/^attached-42$/m);
  a.keys('C-p', 'C-q');
  await a.until(/EXIT=0$/m); // the prompt stays on its line, as with podman
  const as = await a.stty();
  t.is(as.after, as.before, `${what}: detaching restores the terminal`);
  t.is(sync(burrow(['inspect', '-f', '{{.State.Status}} {{.Config.Tty}}', 'tty2'])).stdout, 'running true\n', `${what}: still running after the detach keys`);
  t.regex(sync(burrow(['logs', 'tty2'])).stdout, /attached-42/, `${what}: the log holds the terminal's output`);

  // exec -it into it: its own terminal, the command's exit status
  const e = pane(t, burrow(['exec', '-it', 'tty2', 'sh']), { x: 90, y: 25 });
  await e.until(/^#\s*$/m);
  e.type('tty; stty size; exit 9\n');
  await e.until(/^\/dev\/pts\/\d+\n25 90\n(.*\n)*EXIT=9$/m);
  const es = await e.stty();
  t.is(es.after, es.before, `${what}: exec -it restores the terminal`);
  // a custom detach sequence, from attach again
  const c = pane(t, burrow(['attach', '--detach-keys', 'ctrl-a,d', 'tty2']));
  await new Promise((r) => setTimeout(r, 500));
  c.keys('C-a', 'd');
  await c.until(/EXIT=0$/m);
  t.is(sync(burrow(['inspect', '-f', '{{.State.Status}}', 'tty2'])).stdout, 'running\n');
  // the container's own exit ends an attached session with its status
  const f = pane(t, burrow(['attach', 'tty2']));
  await new Promise((r) => setTimeout(r, 500));
  f.type('exit 5\n');
  await f.until(/EXIT=5$/m);
}

rootTest.serial('rootful: run -it gives a real terminal (size, resize, ctrl-c, exit status), -itd + attach + detach keys, exec -it', async (t) => {
  const missing = tmuxMissing();
  if (missing) return t.fail(missing);
  const sb = rootSandbox(t);
  const w = await world(t);
  await session(t, (args) => rootArgv(sb, w.host, args), 'rootful');
});

rootTest.serial('rootless: the same on usernet, as an unprivileged user', async (t) => {
  const missing = tmuxMissing();
  if (missing) return t.fail(missing);
  ensureUser(t, USER);
  const w = await world(t);
  await session(t, (args) => userArgv(USER, w.host, args), 'rootless');
});
