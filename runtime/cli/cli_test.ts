/** The CLI builds only the command group its argv needs, with the same result as building all. */
import test from 'ava';
import { buildProgram, COMMAND_GROUPS, groupsFor } from './cli.js';

const sink = () => {
  let text = '';
  return { out: (s: string) => void (text += s), text: () => text };
};

test('each group answers to exactly the names of the commands it builds, and they cover the program', async (t) => {
  const quiet = () => undefined;
  const all = (await buildProgram(quiet, quiet)).commands.map((c) => c.name());
  const named: string[] = [];
  for (const g of COMMAND_GROUPS) {
    const made = (await g.make(() => ({}), quiet, quiet)).map((c) => c.name());
    t.deepEqual(made, g.names, `group ${g.names[0]}`);
    named.push(...made);
  }
  t.deepEqual(named, all);
});

test('groupsFor picks the first operand after the global options', (t) => {
  const only = (args: string[]) => groupsFor(args).map((g) => g.names[0]);
  t.deepEqual(only(['ps']), ['ps']);
  t.deepEqual(only(['logs', '-f', 'x']), ['start']);
  t.deepEqual(only(['--config', 'network', 'ps', '-a']), ['ps']); // 'network' is --config's value
  t.deepEqual(only(['--config=/x.toml', 'network', 'ls']), ['network']);
  t.deepEqual(only(['--version']), []);
  t.deepEqual(only(['-v']), []);
  for (const all of [[], ['--help'], ['-v', '--help'], ['help', 'ps'], ['nosuch'], ['--', 'ps']]) t.is(groupsFor(all), COMMAND_GROUPS, all.join(' '));
});

test('help and errors of a command built alone are those of the full program', async (t) => {
  const run = async (args: string[], groups = COMMAND_GROUPS) => {
    const o = sink();
    const e = sink();
    const p = await buildProgram(o.out, e.out, groups);
    const override = (c: Awaited<ReturnType<typeof buildProgram>>): void => {
      c.exitOverride();
      c.commands.forEach(override);
    };
    override(p);
    await p.parseAsync(['node', 'burrow', ...args]).catch(() => undefined);
    return `${o.text()}|${e.text()}`;
  };
  for (const g of COMMAND_GROUPS) {
    for (const name of g.names) {
      const args = [name, '--help'];
      t.is(await run(args, groupsFor(args)), await run(args), name);
      t.true((await run(args)).includes(`Usage: burrow ${name}`), name);
    }
  }
  t.is(await run(['ps', '--no-such-flag'], groupsFor(['ps'])), await run(['ps', '--no-such-flag']));
  t.is(await run(['--version'], groupsFor(['--version'])), await run(['--version']));
  t.regex(await run(['--version'], []), /^\d+\.\d+\.\d+\n\|$/);
});
