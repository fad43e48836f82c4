/** The `slirp4netns` drop-in's entry (bin/compat/slirp4netns). */
import { main } from './slirp4netns.js';

main(process.argv.slice(2)).then((code) => {
  process.exit(code);
}, (err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
