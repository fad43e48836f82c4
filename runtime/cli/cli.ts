/**
 * The `burrow` command line. Every command module is loaded lazily, so
 * `burrow --version` and `burrow --help` start without netlink or the addon.
 * Errors print one "Error: ..." line (plus the CNI code when there is one);
 * nothing is printed twice and no stack trace reaches the user unless
 * BURROW_DEBUG is set. Exit codes are podman's: 125 when burrow itself fails
 * (a bad flag, an unknown container or network, a name in use, a port
 * conflict), 126 when the container's command cannot be invoked, 127 when it
 * is not found, and otherwise the command's own status.
 */
import { Command, CommanderError } from 'commander';
import { CniError } from '../../net/cni/types.js';
import { cniCommand, compatCommand } from './cmd_cni.js';
import { networkCommand } from './cmd_network.js';
import { unshareCommand } from './cmd_unshare.js';
import { usernetCommand } from './cmd_usernet.js';
import { internalCommand, runCommand, systemCommand } from './cmd_run.js';
import { podCommand } from './cmd_pods.js';
import { benchCommand } from './cmd_bench.js';
import { containerCommands } from './cmd_containers.js';
import { lifecycleCommands } from './cmd_lifecycle.js';
import { volumeCommand } from './cmd_volume.js';
import { infoCommands } from './cmd_info.js';

import { VERSION } from '../version.js';

export { VERSION };

const write = (s: string) => void process.stdout.write(s);
const warn = (s: string) => void process.stderr.write(s);

/** Builds the program; exported so tests can run commands in-process. */
let exitCode = 0;

export function buildProgram(out = write, err = warn): Command {
  const program = new Command('burrow')
    .description('container networking and rootless isolation for Linux: CNI runtime and plugins, userspace networking, user namespaces')
    .version(VERSION, '-v, --version')
    .option('--config <file>', 'burrow.toml to use (default: /etc/burrow/burrow.toml, or ~/.config/burrow/burrow.toml for users)')
    .enablePositionalOptions() // global options go before the command: 'run -v' is a volume
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: out, writeErr: err });
  const globals = () => program.opts<{ config?: string }>();
  program.addCommand(networkCommand(globals, out, err));
  program.addCommand(cniCommand(globals, out));
  program.addCommand(compatCommand(out));
  program.addCommand(unshareCommand(globals, (code) => {
    exitCode = code;
  }));
  program.addCommand(usernetCommand((code) => {
    exitCode = code;
  }, out));
  program.addCommand(runCommand(globals, (code) => {
    exitCode = code;
  }, out));
  program.addCommand(systemCommand(globals, out));
  program.addCommand(podCommand(globals, out));
  program.addCommand(benchCommand((code) => {
    exitCode = code;
  }));
  program.addCommand(internalCommand(out, () => globals().config), { hidden: true });
  program.addCommand(volumeCommand(globals, out));
  for (const c of infoCommands(globals, out, VERSION)) program.addCommand(c);
  for (const c of containerCommands(globals, out)) program.addCommand(c);
  for (const c of lifecycleCommands(globals, out, (code) => {
    exitCode = code;
  })) program.addCommand(c);
  return program;
}

/** Formats an error for the user: its message, and its CNI code and details when present. */
export function describeError(e: unknown): string {
  if (e instanceof CniError) return `Error: ${e.message}${e.details ? ` (${e.details})` : ''} [CNI error code ${e.cniCode}]`;
  return `Error: ${(e as Error)?.message ?? String(e)}`;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv = process.argv): Promise<number> {
  const program = buildProgram();
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
