/** Paths shared by `burrow cni install` and `burrow cni serve` (kept apart so the CLI loads neither). */

/** Where the service listens and the native launchers look, unless told otherwise (/run/burrow is root's). */
export const DEFAULT_CNI_SOCKET = '/run/burrow/cni.sock';
