/** The dnsname CNI executable; `dnsname serve ...` runs the DNS server itself. */
import { runPlugin } from '../run.js';
import { dnsname } from './index.js';
import { parseServeArgs, serve } from './server.js';

if (process.argv[2] === 'serve') {
  let args;
  try {
    args = parseServeArgs(process.argv.slice(3));
  } catch (err) {
    process.stderr.write(`dnsname serve: ${(err as Error).message}\n`);
    process.exit(2);
  }
  serve(args).catch((err: Error) => {
    process.stderr.write(`dnsname serve: ${err.message}\n`);
    process.exit(1);
  });
} else void runPlugin(dnsname);
