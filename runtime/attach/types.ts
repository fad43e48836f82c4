/**
 * The seam between a container and its network: one module per attachment mode (cni, usernet,
 * anchor tools, join, host/none), each behind {@link NetworkMode}. `runContainer` picks the mode
 * before anything starts (validation happens there), starts the namespaces as the mode asks, and
 * calls `attach` with the held container; the mode pushes its own teardown onto the undo stack
 * and returns what the container's /etc files need. `gc` collects what a crashed supervisor left.
 */
import type { PortSpec } from '../../net/ports/portspec.js';
import type { CniAttachment, ContainerRecord } from '../container/containers.js';
import type { UndoStack } from './undo.js';

export type NetworkRecord = ContainerRecord['network'];

/** The container as the namespace helper holds it, its command not yet running. */
export interface Held {
  /** Host pid of the container's init. */
  pid: number;
  /** The container's netns as a path that stays valid while we hold its fd (/proc/self/fd/N). */
  netnsPath?: string;
  /** The TAP made inside (usernet), ours to take over. */
  tapFd?: number;
}

/** What attaching needs from the run, besides the held container. */
export interface AttachContext {
  id: string;
  /** The container's name (its DNS name on networks with DNS). */
  name: string;
  /** The container's state dir (pid files, sockets of anchor tools). */
  dir: string;
  stateDir: string;
  /** Published ports with their host ports chosen. */
  ports: PortSpec[];
  /** --dns. */
  dns: string[];
  mapHostLoopback?: string;
  /** Writes the record's network field (before a CNI ADD, so a crash mid-ADD is collected). */
  saveNetwork(network: NetworkRecord): void;
}

/** What the container's /etc files and its record get from the network. */
export interface Attached {
  ips: string[];
  /** resolv.conf's text ("" for none). */
  resolv: string;
  /** /etc/hosts lines beyond localhost and the container's own. */
  extraHosts: string[];
  /** podman's host.containers.internal: the first bridge network's IPv4 gateway. */
  hostGateway?: string;
  /** A usernet stack's API socket (burrow port add/rm). */
  apiSocket?: string;
  /** What the networks' results said of DNS (a network with container names: its gateway and search domain). */
  networkDns?: { nameservers: string[]; search: string[] };
}

export interface NetworkMode {
  readonly kind: NetworkRecord['mode'];
  /** The helper gives the container a network namespace of its own (host and join: no). */
  readonly ownNetns: boolean;
  /**
   * Once attached, nothing of the network lives in the supervisor but fds: a native holder may
   * take the container over and `teardownHeld` undo the network from the record (usernet's stack
   * and the anchor tools need the process: no).
   */
  readonly holdable?: boolean;
  /** A TAP to make inside the new netns (usernet). */
  readonly tap?: string;
  /** The record's network field as the container is created. */
  initialRecord(): NetworkRecord;
  /** Runs before the namespaces are made (the user's network namespace is made on first use). */
  prepare?(undo: UndoStack<CniAttachment>): Promise<void>;
  /** After prepare: make the container's namespaces inside this pid's user namespace. */
  insidePid?(): number;
  attach(c: AttachContext, held: Held, undo: UndoStack<CniAttachment>): Promise<Attached>;
}

/** podman's resolv.conf for a container: --dns, else the host's nameservers minus loopback ones. */
export type ResolvFor = (dns: string[]) => string;
