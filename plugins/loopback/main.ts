/** The loopback CNI executable. */
import { runPlugin } from '../run.js';
import { loopback } from './index.js';

void runPlugin(loopback);
