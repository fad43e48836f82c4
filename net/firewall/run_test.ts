import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toolPath } from '../../native/system.js';
import { runTool } from './run.js';

test('firewall tools come from the system directories, never from a PATH entry such as node_modules/.bin', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-path-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'nft'), '#!/bin/sh\necho impostor\n', { mode: 0o755 });
  const saved = process.env.PATH;
  process.env.PATH = `${dir}:${saved}`;
  t.teardown(() => { process.env.PATH = saved; });
  const real = toolPath('nft');
  t.truthy(real);
  t.not(path.dirname(real!), dir);
  t.notRegex((await runTool('nft', ['--version'])).stdout, /impostor/);
  t.is(toolPath('surely-not-a-tool'), null);
  await t.throwsAsync(runTool('surely-not-a-tool', []), { message: /cannot run surely-not-a-tool: not installed in \/usr\/sbin/ });
});
