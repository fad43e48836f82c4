/** The host-local CNI executable. */
import { runPlugin } from '../run.js';
import { hostLocal } from './index.js';

void runPlugin(hostLocal);
