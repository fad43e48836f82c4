/**
 * The dhcp CNI executable, one binary for both roles as the reference: `dhcp daemon [flags]`
 * runs the daemon, anything else is the IPAM plugin.
 */
import { runPlugin } from '../run.js';
import { dhcp } from './index.js';

if (process.argv[2] === 'daemon') {
  void import('./cli.js').then((m) => m.daemonMain(process.argv.slice(3)));
} else {
  void runPlugin(dhcp);
}
