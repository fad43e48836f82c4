/**
 * Collects what containers left behind: the attachments and records of those whose supervisor is
 * gone (kill -9), and teardown that failed when a container ended. Every container command runs
 * it first, so its common case (nothing to collect) reads the store and loads nothing else: the
 * CNI runtime, the user networks and the DNS server's code come in only for a record that needs
 * them.
 */
import { TeardownError } from '../../native/errors.js';
import type { UserNetns } from '../network/user_netns.js';
import type { Context } from '../context.js';
import { pendingCni } from '../attach/cni.js';
import { ContainerStore, type ContainerRecord } from './containers.js';
import { recordCniOps } from './teardown.js';

/** Cleans up after containers (see the file's comment); returns a line per container it acted on. */
export async function gcContainers(ctx: Context): Promise<string[]> {
  const store = new ContainerStore(ctx.config.stateDir);
  const cleaned: string[] = [];
  const who = (r: ContainerRecord) => `${r.name} (${r.id.slice(0, 12)})`;
  const stale = new Set(store.stale().map((r) => r.id));
  let loaded: typeof import('../attach/index.js') | undefined;
  const attachMod = async () => (loaded ??= await import('../attach/index.js'));
  // a user network's attachments are deleted inside the user's network namespace (made again if
  // its holder went too: host-local's addresses are kept in the user's state dir)
  const holder: { ns?: UserNetns } = {};
  for (const r of store.list()) {
    // a dead supervisor's /proc/PID/fd path names no netns any more (a zombie's may still open)
    const pending = stale.has(r.id) ? pendingCni(r).map((a) => (r.network.mode === 'cni' && r.network.userNetns ? { ...a, netns: '' } : a)) : r.teardown?.retry;
    if (!pending) continue;
    const ops = await recordCniOps(ctx, r, holder);
    const attach = await attachMod();
    // the one stack of the user's namespace still forwards a killed container's published ports
    if (stale.has(r.id) && r.network.mode === 'cni' && r.network.userNetns) await attach.unpublish(ctx.config.stateDir, (await import('../../net/ports/portspec.js')).parseRecordedPorts(r.ports));
    const failed = await attach.gcCni(ops, r.id, pending);
    if (failed.length) {
      const steps = failed.map((f) => ({ step: `CNI DEL of network "${f.attachment.network}" (${f.attachment.ifname})`, error: f.error }));
      const err = new TeardownError(`container ${who(r)}`, steps);
      const at = new Date().toISOString();
      Object.assign(r, { state: 'exited', initPid: undefined, finished: r.finished ?? at, exitCode: r.exitCode ?? 137, teardown: { errors: steps.map((s) => ({ step: s.step, error: s.error instanceof Error ? s.error.message : String(s.error) })), retry: failed.map((f) => f.attachment), remove: r.teardown?.remove ?? true, at } });
      store.write(r);
      cleaned.push(`still failing: ${err.message}`);
      continue;
    }
    if (stale.has(r.id) || r.teardown?.remove) {
      await store.remove(r.id);
      cleaned.push(stale.has(r.id) ? `removed ${who(r)}` : `teardown of ${who(r)} completed; removed`);
    } else {
      delete r.teardown;
      store.write(r);
      cleaned.push(`teardown of ${who(r)} completed`);
    }
  }
  if (holder.ns && loaded && !loaded.userNetnsNeeded(ctx.config.stateDir)) {
    const { collectUserNetns } = await import('../network/user_netns.js');
    const { userNetnsNeeded } = loaded;
    await collectUserNetns(ctx.config.stateDir, () => userNetnsNeeded(ctx.config.stateDir));
  }
  // a killed DNS server comes back with every record (the files outlive it)
  try {
    const revived = await (await import('../network/dns.js')).reviveDnsServer(ctx.config);
    if (revived) cleaned.push(revived);
  } catch (err) {
    cleaned.push(`the DNS server could not be started again: ${(err as Error).message}`);
  }
  return cleaned;
}
