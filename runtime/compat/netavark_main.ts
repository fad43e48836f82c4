/** The `netavark` drop-in's entry (bin/compat/netavark). */
import { main } from './netavark.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (err: Error) => {
  process.stdout.write(JSON.stringify({ error: err.message }));
  process.exitCode = 1;
});
