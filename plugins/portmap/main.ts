/** The portmap CNI executable. */
import { runPlugin } from '../run.js';
import { portmap } from './index.js';

void runPlugin(portmap);
