/** Entry of dist/bench.cjs (`burrow bench` runs it). */
import { main } from './main.js';

main(process.argv.slice(2));
