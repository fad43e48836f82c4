/** The tuning CNI executable. */
import { runPlugin } from '../run.js';
import { tuning } from './index.js';

void runPlugin(tuning);
