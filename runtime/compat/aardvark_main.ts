/** The `aardvark-dns` drop-in's entry (bin/compat/aardvark-dns). */
import { main } from './aardvark_dns.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (err: Error) => {
  process.stderr.write(`Error: ${err.message}\n`);
  process.exitCode = 1;
});
