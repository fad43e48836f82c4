/** Paths shared by `burrow cni install` and `burrow cni serve` (kept apart so the CLI loads neither). */

/** Where the service listens and the native launchers look, unless told otherwise (/run/burrow is root's). */
export const DEFAULT_CNI_SOCKET = '/run/burrow/cni.sock';

/** The environment variable that hands a replaced service's listening socket to its replacement (serve.ts). */
export const LISTEN_FD_ENV = 'BURROW_CNI_LISTEN_FD';
/** "1" when the handed socket's path is the service's own (it removes the path when it closes for good). */
export const LISTEN_OWN_ENV = 'BURROW_CNI_LISTEN_OWN';
