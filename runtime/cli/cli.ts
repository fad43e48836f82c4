/**
 * The `burrow` command line. Every command module is loaded lazily, and only
 * the one a command line names is loaded and built (`COMMAND_GROUPS`), so
 * `burrow --version` starts without building a command and `burrow ps` without
 * loading the network or run code.
 * Errors print one "Error: ..." line (plus the CNI code when there is one);
 * nothing is printed twice and no stack trace reaches the user unless
 * BURROW_DEBUG is set. Exit codes are podman's: 125 when burrow itself fails
 * (a bad flag, an unknown container or network, a name in use, a port
 * conflict), 126 when the container's command cannot be invoked, 127 when it
 * is not found, and otherwise the command's own status.
 */
import { Command, CommanderError } from 'commander';
import { CniError } from '../../net/cni/types.js';
import { VERSION } from '../version.js';
import { fdWriter } from './stdio.js';

export { VERSION };

const write = fdWriter(1);
const warn = fdWriter(2);

let exitCode = 0;
const setExit = (code: number) => {
  exitCode = code;
};

type Globals = () => { config?: string };
/**
 * The top-level commands, in --help's order, each under the names it answers to. A start builds
 * only the group its argv names (`burrow ps` does not build `run`'s 60 options); --help, `help`
 * and anything unknown build them all. cli_test checks that the names match what the builders make.
 */
export const COMMAND_GROUPS: { names: string[]; hidden?: boolean; make: (g: Globals, out: Out, err: Out) => Promise<Command[]> }[] = [
  { names: ['network'], make: async (g, out, err) => [(await import('./cmd_network.js')).networkCommand(g, out, err)] },
  { names: ['cni'], make: async (g, out) => [(await import('./cmd_cni.js')).cniCommand(g, out)] },
  { names: ['compat'], make: async (_g, out) => [(await import('./cmd_cni.js')).compatCommand(out)] },
  { names: ['unshare'], make: async (g) => [(await import('./cmd_unshare.js')).unshareCommand(g, setExit)] },
  { names: ['usernet'], make: async (_g, out) => [(await import('./cmd_usernet.js')).usernetCommand(setExit, out)] },
  { names: ['run'], make: async (g, out) => [(await import('./cmd_run.js')).runCommand(g, setExit, out)] },
  { names: ['system'], make: async (g, out) => [(await import('./cmd_run.js')).systemCommand(g, out)] },
  { names: ['pod'], make: async (g, out) => [(await import('./cmd_pods.js')).podCommand(g, out)] },
  { names: ['bench'], make: async () => [(await import('./cmd_bench.js')).benchCommand(setExit)] },
  { names: ['internal'], hidden: true, make: async (g, out) => [(await import('./cmd_run.js')).internalCommand(out, () => g().config)] },
  { names: ['volume'], make: async (g, out) => [(await import('./cmd_volume.js')).volumeCommand(g, out)] },
  { names: ['version', 'info'], make: async (g, out) => (await import('./cmd_info.js')).infoCommands(g, out, VERSION) },
  { names: ['ps', 'stop', 'kill', 'rm', 'wait', 'inspect', 'port'], make: async (g, out) => (await import('./cmd_containers.js')).containerCommands(g, out) },
  { names: ['start', 'restart', 'attach', 'exec', 'logs', 'top'], make: async (g, out) => (await import('./cmd_lifecycle.js')).lifecycleCommands(g, out, setExit) },
];

/**
 * Which command groups a command line needs: the one its first operand names, none for a bare
 * `--version`, all of them otherwise (help, `help CMD`, no command, an unknown one).
 */
export function groupsFor(args: readonly string[]): typeof COMMAND_GROUPS {
  let askedVersion = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--config') i++;
    else if (a === '-v' || a === '--version') askedVersion = true;
    else if (a === '-h' || a === '--help' || a === '--') return COMMAND_GROUPS;
    else if (!a.startsWith('-')) {
      const g = COMMAND_GROUPS.find((x) => x.names.includes(a));
      return g ? [g] : COMMAND_GROUPS;
    }
  }
  return askedVersion ? [] : COMMAND_GROUPS;
}

type Out = (s: string) => void;

/** Builds the program (with the given command groups: all by default). */
export async function buildProgram(out = write, err = warn, groups = COMMAND_GROUPS): Promise<Command> {
  const program = new Command('burrow')
    .description('container networking and rootless isolation for Linux: CNI runtime and plugins, userspace networking, user namespaces')
    .version(VERSION, '-v, --version')
    .option('--config <file>', 'burrow.toml to use (default: /etc/burrow/burrow.toml, or ~/.config/burrow/burrow.toml for users)')
    .enablePositionalOptions() // global options go before the command: 'run -v' is a volume
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: out, writeErr: err });
  const globals = () => program.opts<{ config?: string }>();
  for (const g of groups) {
    for (const c of await g.make(globals, out, err)) program.addCommand(c, g.hidden ? { hidden: true } : {});
  }
  // addCommand does not pass the output on: every command's help and errors go through out/err
  const output = (c: Command): void => {
    c.configureOutput({ writeOut: out, writeErr: err });
    c.commands.forEach(output);
  };
  program.commands.forEach(output);
  return program;
}

/** Formats an error for the user: its message, and its CNI code and details when present. */
export function describeError(e: unknown): string {
  if (e instanceof CniError) return `Error: ${e.message}${e.details ? ` (${e.details})` : ''} [CNI error code ${e.cniCode}]`;
  return `Error: ${(e as Error)?.message ?? String(e)}`;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv = process.argv): Promise<number> {
  const program = await buildProgram(write, warn, groupsFor(argv.slice(2)));
  const override = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_BURROW;
    warn(`${describeError(e)}\n`);
    if (process.env.BURROW_DEBUG) warn(`${(e as Error)?.stack ?? ''}\n`);
    // a few failures have podman's own status (a volume in use: 2)
    const own = (e as { exitStatus?: unknown })?.exitStatus;
    return typeof own === 'number' ? own : EXIT_BURROW;
  }
}

/** podman's exit code for a failure of the tool itself (not of the container's command). */
export const EXIT_BURROW = 125;
