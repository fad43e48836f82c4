/**
 * The end of a container, from its record: the network detached (CNI DEL, a user network's
 * forwards and namespace), then the record kept as exited, or removed with its anonymous volumes
 * (--rm), or kept with the failed steps for `system gc` to retry. A foreground run and a Node
 * supervisor finish through {@link finishContainer} after their undo stack; a native holder
 * (native/burrow-holder.c) runs `burrow internal teardown ID CODE`, which is
 * {@link teardownHeld}: the holder still keeps the netns fd open, so the record's
 * /proc/HOLDER/fd/N paths still name the container's netns.
 */
import { TeardownError } from '../../native/errors.js';
import type { UndoFailure } from '../attach/undo.js';
import type { BurrowConfig } from '../config.js';
import type { Context } from '../context.js';
import type { UserNetns } from '../network/user_netns.js';
import { ContainerStore, type CniAttachment, type ContainerRecord } from './containers.js';
import type { VolumeStore } from './volumes.js';

export interface FinishOptions {
  /** null: the command never ran (a failed start). */
  exitCode: number | null;
  /** Teardown steps that failed; a tagged one (a CNI attachment) is kept for `system gc` to retry. */
  failures: Array<UndoFailure<CniAttachment>>;
  /** Remove the record (--rm, or a start that failed) instead of keeping it exited. */
  remove: boolean;
  /** Volumes that go with the record when it is removed. */
  volumes: string[];
  volumeStore: VolumeStore;
}

/** Writes the container's end into its record (see the file's comment). */
export async function finishContainer(store: ContainerStore, record: ContainerRecord, o: FinishOptions): Promise<void> {
  delete record.holder;
  const finished = { state: 'exited' as const, exitCode: o.exitCode ?? 125, finished: new Date().toISOString(), initPid: undefined };
  if (o.failures.length) {
    const retry = o.failures.flatMap((f) => (f.tag ? [{ ...f.tag, netns: '' }] : [])); // the netns fd goes with its holder
    const err = new TeardownError(`container "${record.name}" (${record.id.slice(0, 12)})`, o.failures);
    process.stderr.write(`Error: ${err.message}; "burrow system gc" retries it\n`);
    Object.assign(record, finished, { teardown: { errors: o.failures.map((f) => ({ step: f.step, error: f.error instanceof Error ? f.error.message : String(f.error) })), retry, remove: o.remove, at: finished.finished } });
    store.write(record);
    return;
  }
  if (o.remove) {
    await store.remove(record.id);
    const { removeTree } = await import('./volumes.js'); // gc loads this module for every command: volumes only when needed
    for (const v of o.volumes) await o.volumeStore.remove(v, (d) => removeTree(d)).catch((e) => process.stderr.write(`Error: removing volume ${v}: ${(e as Error).message}\n`));
    return;
  }
  Object.assign(record, finished);
  store.write(record);
}

/**
 * The CNI operations that delete record `r`'s attachments: the host's runtime, or inside the
 * user's network namespace for a user network (`holder` caches that namespace across records).
 */
export async function recordCniOps(ctx: Context, r: ContainerRecord, holder: { ns?: UserNetns }) {
  const attach = await import('../attach/index.js');
  if (r.network.mode !== 'cni' || !r.network.userNetns) return attach.cniOps(ctx);
  holder.ns ??= (await attach.userNetns(ctx.config)).holder;
  const h = holder.ns;
  return attach.insideCniOps(ctx.config, (n) => ctx.networks.get(n), () => undefined, () => h);
}

/**
 * `burrow internal teardown ID CODE`, run by the native holder of container `id` once its command
 * exited with `exitCode`: the network's undo from the record, in the supervisor's order (the
 * last network first, then a user network's forwards and namespace), then {@link finishContainer}.
 */
export async function teardownHeld(config: BurrowConfig, id: string, exitCode: number): Promise<void> {
  const store = new ContainerStore(config.stateDir);
  const record = store.find(id);
  const { makeContext } = await import('../context.js');
  // the plugins run in this process for a rootful CNI network; a user network's run inside its namespace
  const ctx = await makeContext(config, { plugins: record.network.mode === 'cni' && !record.network.userNetns });
  const failures: Array<UndoFailure<CniAttachment>> = [];
  const net = record.network;
  if (net.mode === 'cni') {
    const attach = await import('../attach/index.js');
    const ops = await recordCniOps(ctx, record, {});
    const failed = await attach.gcCni(ops, id, [...net.attachments].reverse());
    failures.push(...failed.map((f) => ({ step: `CNI DEL of network "${f.attachment.network}" (${f.attachment.ifname})`, error: f.error, tag: f.attachment })));
    if (net.userNetns) {
      const { parseRecordedPorts } = await import('../../net/ports/portspec.js');
      try {
        await attach.unpublish(ctx.config.stateDir, parseRecordedPorts(record.ports));
      } catch (error) {
        failures.push({ step: 'remove the published ports from the user\'s stack', error });
      }
      const { collectUserNetns } = await import('../network/user_netns.js');
      try {
        await collectUserNetns(ctx.config.stateDir, () => attach.userNetnsNeeded(ctx.config.stateDir, id));
      } catch (error) {
        failures.push({ step: 'release the user\'s network namespace', error });
      }
    }
  }
  const volumes = (record.mounts ?? []).filter((m) => m.anonymous && m.name).map((m) => m.name!);
  const { VolumeStore } = await import('./volumes.js');
  await finishContainer(store, record, { exitCode, failures, remove: !!record.spec?.rm, volumes, volumeStore: new VolumeStore(ctx.config.volumePath) });
}
