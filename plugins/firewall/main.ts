/** The firewall CNI executable. */
import { runPlugin } from '../run.js';
import { firewall } from './index.js';

void runPlugin(firewall);
