/** Entry point of the `burrow` executable (bundled to dist/burrow.cjs). */
import { main } from './cli/cli.js';

main().then((code) => {
  process.exitCode = code;
});
