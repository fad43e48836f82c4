/*
 * burrow-ns: creates a user namespace (plus the other requested namespaces) for a command.
 *
 * Theory of operation
 * -------------------
 * Node is multi-threaded, so it cannot unshare(CLONE_NEWUSER) itself. This helper clones a child
 * with CLONE_NEWUSER and the requested flags; the child blocks on a pipe. The helper reports the
 * child's pid on fd 3 ("PID <n>\n") and waits for one line on fd 4: "GO" once the caller has
 * written the maps (newuidmap/newgidmap, or /proc/PID/{uid,gid}_map directly as root), anything
 * else aborts. The child then execs the command; in a new pid namespace it is pid 1 and stays as
 * a minimal init instead: it forks the command, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/
 * SIGUSR2 to it, reaps every zombie, and exits with the command's status as soon as the command
 * exits (like catatonit; the kernel then kills whatever else ran in the namespace). The
 * helper forwards the same signals to the child and exits with its status (128+signal if killed).
 *
 * Handing fds back: with -s FD (a unix socket inherited from the caller), once the maps are
 * written the child sends one message on it: "OK" with SCM_RIGHTS [net ns, user ns, TAP] (the TAP
 * only with -t NAME: IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, a 12-byte vnet header and checksum/TSO
 * offloads, created inside the new namespaces where the child holds CAP_NET_ADMIN; loopback is
 * brought up too), or "ERR <reason>" and no fds. The caller runs the userspace network stack on
 * that TAP from outside the namespace.
 *
 * With -w (and -s), the child then waits for one byte on that socket before it execs, so the
 * caller can configure the network first; EOF instead of the byte aborts (exit 125).
 *
 * Socket factory: with -j PID -F and -s FD, the helper stays in PID's namespaces and answers
 * requests on FD until it is closed: "CONNECT <4|6> <port> <address>" gets "OK" with a TCP socket
 * connected from inside the namespace (SCM_RIGHTS), or "ERR <errno name>". The rootless port
 * forwarder's loopback path uses it, since only a process inside can create such sockets.
 *
 * Joining: -j PID enters PID's user namespace (when it is not ours) and network namespace instead
 * of cloning, then does the same -t/-s work and execs CMD if one is given (exit 0 otherwise). A
 * user owns the namespaces it created, so this works unprivileged, like `nsenter -U -n`. -j PATH
 * (an absolute path) joins the network namespace bound there instead, after the user namespace
 * at -Y PATH or the one owning it (slirp4netns's --netns-type=path and --userns-path).
 *
 * Filesystem (with a mount namespace): -R host gives the command the host's filesystem read-only
 * with private tmpfs on /tmp, /run and /dev/shm and a fresh /proc; -R DIR pivots into DIR (with
 * the same private mounts and a minimal /dev of bind-mounted host nodes). -B SRC:DST bind-mounts a
 * file or directory read-only over DST inside (generated /etc/hosts, resolv.conf, hostname);
 * -V SRC:DST does the same writable (volumes).
 * -H NAME sets the hostname (with a uts namespace); -C DIR is the working directory.
 *
 * Capabilities: -c MASK (hex) keeps only those capabilities for the command: the others are
 * dropped from the bounding set (so no exec can regain them) and from the init's own sets.
 *
 * Sharing namespaces (pods, --network container:NAME): -J PID enters PID's user namespace (when
 * it is not ours, becoming root there), then its network, uts and ipc namespaces, and clones the
 * child with only the -n namespaces (mnt, pid): no new user namespace, so no maps to write.
 * -P (pause) runs no command: the init just holds the namespaces until SIGTERM/SIGINT (exit 0),
 * like podman's infra container. With -L the helper outlives its caller (no parent-death signal,
 * its own session): a user's network namespace is held this way, by no burrow process.
 *
 * More mounts: -M DST:OPTIONS mounts a tmpfs (--tmpfs); -E nosuid,nodev,noexec,norec,ro applies to
 * the mount before it (binds are recursive unless norec). -r makes a rootfs read-only (with a
 * tmpfs on /var/tmp, as podman's --read-only). Every root gets a minimal /dev (-D: the host's,
 * for --privileged) with its own devpts instance, and podman's masked and read-only /proc and
 * /sys paths (-U: none).
 *
 * The command: -u UID:GID[:G,...] runs it as that user (ids of the container), -N sets
 * no_new_privs, and -T FD gives it a terminal: the init opens one in the container's devpts,
 * sends "PTY" with the master on FD, waits for a byte back (the window size is set), and the
 * command becomes a session leader with the slave as its controlling terminal on fds 0-2.
 *
 * Exec: -X PID runs CMD in all of PID's namespaces and root (user when not ours, ipc, uts, net,
 * pid, mnt), forked so it is inside the pid namespace, with -C, -c, -u, -N and -T as above; -d
 * prints the command's host pid and returns at once (the container's init reaps it).
 *
 * Usage: burrow-ns [-n net,mnt,pid,uts,ipc] [-J PID] [-t TAPNAME] [-s FD [-w]] [-R host|DIR [-r] [-D] [-U]]
 *                  [-B SRC:DST | -V SRC:DST | -M DST:OPTS [-E OPTS]]... [-H NAME] [-C DIR] [-c MASK]
 *                  [-u UID:GID[:G,...]] [-N] [-T FD] (-P | -- CMD [ARGS...])
 *        burrow-ns -j PID [-t TAPNAME] [-s FD [-F]] [-- CMD [ARGS...]]
 *        burrow-ns -X PID [-d] [-C DIR] [-c MASK] [-u UID:GID[:G,...]] [-N] [-T FD] -- CMD [ARGS...]
 *        burrow-ns -Z [-B SRC:DST | -V SRC:DST [-E OPTS]]... [-c MASK] -- CMD [ARGS...]
 *
 * Sandbox: -Z confines CMD in the caller's own namespaces as slirp4netns's --enable-sandbox does
 * (see make_sandbox): an empty read-only root with only the binds, no_new_privs, -c capabilities.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

static int sync_pipe[2];
static char **target;
static char **all_argv; /* the init renames itself over these (ps, burrow top) */
static int all_argc;
static int new_pid_ns;
static int new_net_ns;
static pid_t forward_to;
static const char *tap_name;
static int send_sock = -1;
static int wait_go;
static const char *root_mode;
#define MAX_MOUNTS 64
static const char *binds[MAX_MOUNTS];
/* 0: bind read-only (-B), 1: bind writable (-V), 2: tmpfs (-M DST:OPTS) */
static int mount_kind[MAX_MOUNTS];
/* -E after a mount: extra MS_NOSUID/MS_NODEV/MS_NOEXEC, and a non-recursive bind */
static unsigned long mount_flags[MAX_MOUNTS];
static int mount_norec[MAX_MOUNTS];
static int nbinds;
static int read_only_root;  /* -r */
static int host_devices;    /* -D: the host's /dev (--privileged) */
static int unmasked;        /* -U: no masked or read-only /proc and /sys paths (--privileged) */
static int no_new_privs;    /* -N */
static int console_sock = -1; /* -T FD: the terminal's master goes back on it */
static int console_slave = -1;
static int exec_detached;   /* -X with -d: the helper returns at once, the command lives on */
static int user_set;        /* -u UID:GID[:G1,G2...] */
static uid_t run_uid;
static gid_t run_gid;
static gid_t run_groups[64];
static int run_ngroups;
static const char *user_spec;
static const char *hostname;
static const char *workdir;
static int cap_set; /* -c given */
static uint64_t cap_keep;
static int pause_mode;
/* -L: the helper outlives its caller (no parent-death signal, a session of its own): the holder
 * of a user's network namespace, which no burrow process supervises. */
static int linger;
static volatile sig_atomic_t pause_done;
/* The caller's ids in the parent namespace, read before the clone. */
static uid_t parent_uid;
static gid_t parent_gid;
static pid_t helper_pid; /* the child's parent, before a new pid namespace hides it */
/* -R sources, opened (O_PATH) while the child still has the caller's identity. */
static int root_fd = -1;
static int bind_fd[MAX_MOUNTS];

/* Brings loopback up in the current network namespace (a new one starts with it down). */
static void lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq lo;
  memset(&lo, 0, sizeof lo);
  strcpy(lo.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &lo) == 0) {
    lo.ifr_flags |= IFF_UP;
    ioctl(s, SIOCSIFFLAGS, &lo);
  }
  close(s);
}

/* Brings loopback up and creates the TAP in the current network namespace; fd or -1 with msg. */
static int make_tap(char *msg, size_t len) {
  lo_up();
  if (strlen(tap_name) >= IFNAMSIZ) {
    snprintf(msg, len, "TAP name \"%s\" is longer than %d bytes", tap_name, IFNAMSIZ - 1);
    return -1;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    snprintf(msg, len, "cannot open /dev/net/tun: %s%s", strerror(e),
             e == EACCES ? " (it must be mode 0666 for rootless use: as root, chmod 0666 /dev/net/tun)"
             : e == ENOENT ? " (load the tun module: modprobe tun)" : "");
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, tap_name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  int hdr = 12;
  const char *step = "TUNSETIFF";
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) goto fail;
  step = "TUNSETVNETHDRSZ";
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) goto fail;
  step = "TUNSETOFFLOAD";
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) goto fail;
  return fd;
fail:
  snprintf(msg, len, "ioctl(%s) on TAP \"%s\": %s", step, tap_name, strerror(errno));
  close(fd);
  return -1;
}

/* Sends `msg` with `n` fds (SCM_RIGHTS) on `sock`; returns 0, or -1 with errno. */
static int send_with_fds(int sock, const char *msg, const int *fds, int n) {
  struct iovec iov = {(void *)msg, strlen(msg)};
  char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  memset(cbuf, 0, sizeof cbuf);
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (n > 0) {
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return -1;
  }
  return 0;
}

/* Sends "OK" + [net ns, user ns, TAP] or "ERR reason" on send_sock; returns 0 on success. */
static int hand_back(void) {
  char msg[256] = "OK";
  int fds[3], n = 0, rc = 0;
  fds[n++] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  fds[n++] = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
  if (fds[0] < 0 || fds[1] < 0) {
    snprintf(msg, sizeof msg, "ERR cannot open /proc/self/ns: %s", strerror(errno));
    rc = -1;
  } else if (tap_name) {
    char why[200];
    int t = make_tap(why, sizeof why);
    if (t < 0) {
      snprintf(msg, sizeof msg, "ERR %s", why);
      rc = -1;
    } else {
      fds[n++] = t;
    }
  }
  if (send_sock < 0) {
    if (rc) fprintf(stderr, "burrow-ns: %s\n", msg + 4);
  } else if (send_with_fds(send_sock, msg, fds, rc == 0 ? n : 0) < 0) {
    rc = -1;
  }
  for (int i = 0; i < n; i++) if (fds[i] >= 0) close(fds[i]);
  return rc;
}

static void die(const char *what, const char *obj) {
  fprintf(stderr, "burrow-ns: cannot %s \"%s\": %s\n", what, obj, strerror(errno));
  _exit(125);
}

/* The flags a remount must keep: in a user namespace the kernel locks them (EPERM otherwise). */
static unsigned long kept_flags(const char *path) {
  struct statvfs sv;
  unsigned long f = 0;
  if (statvfs(path, &sv) != 0) return 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

/* Makes every mount at or below `top` read-only (best effort for kernel filesystems). */
static void remount_tree_ro(const char *top) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  if (!f) die("read", "/proc/self/mountinfo");
  char line[4096];
  size_t n = strlen(top);
  while (fgets(line, sizeof line, f)) {
    char mp[4096];
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1) continue;
    if (strncmp(mp, top, n) != 0 || (mp[n] != '/' && mp[n] != 0)) continue;
    /* mountinfo escapes spaces as \040; such mount points are left as they are */
    if (strchr(mp, '\\')) continue;
    mount(NULL, mp, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(mp), NULL);
  }
  fclose(f);
}

static void mkdir_p(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(tmp, 0755);
    *p = '/';
  }
  mkdir(tmp, 0755);
}

static void tmpfs_at(const char *root, const char *dir, const char *opts) {
  char p[4096];
  snprintf(p, sizeof p, "%s%s", root, dir);
  mkdir(p, 0755);
  if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) die("mount a tmpfs on", dir);
}

/* A minimal /dev for a rootfs: tmpfs with the host's safe nodes bind-mounted in. */
static void minimal_dev(const char *root) {
  tmpfs_at(root, "/dev", "mode=0755");
  const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  char p[4096], src[64];
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    snprintf(p, sizeof p, "%s/dev/%s", root, nodes[i]);
    snprintf(src, sizeof src, "/dev/%s", nodes[i]);
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd >= 0) close(fd);
    if (mount(src, p, NULL, MS_BIND, NULL) < 0) die("bind", src);
  }
  /* the links programs expect (bash's process substitution, /dev/stdin), as podman makes them */
  const char *links[][2] = {{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
                            {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    snprintf(p, sizeof p, "%s/dev/%s", root, links[i][0]);
    if (symlink(links[i][1], p) < 0) die("create", p);
  }
  snprintf(p, sizeof p, "%s/dev/pts", root);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/dev/shm", root);
  mkdir(p, 01777);
}

/* -D (--privileged): the host's /dev, recursively, writable. */
static void host_dev(const char *root) {
  char p[4096];
  snprintf(p, sizeof p, "%s/dev", root);
  mkdir(p, 0755);
  if (mount("/dev", p, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind the host's /dev on", p);
}

/*
 * The container's own terminals: a new devpts instance on /dev/pts, so a container sees no host
 * terminal and its ptys are its own (as podman mounts one). gid=5 (tty) only where it is mapped.
 * /dev/ptmx must open this instance: a link in the minimal /dev, a bind over the host's node.
 */
static void own_devpts(const char *root) {
  char p[4096], ptmx[4096];
  snprintf(p, sizeof p, "%s/dev/pts", root);
  mkdir(p, 0755);
  if (mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
      mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0) {
    if (console_sock >= 0) die("mount a devpts instance for the terminal on", "/dev/pts");
    return; /* no terminal asked for: the container does without ptys */
  }
  snprintf(ptmx, sizeof ptmx, "%s/dev/ptmx", root);
  struct stat st;
  if (lstat(ptmx, &st) == 0 && !S_ISLNK(st.st_mode)) {
    snprintf(p, sizeof p, "%s/dev/pts/ptmx", root);
    if (mount(p, ptmx, NULL, MS_BIND, NULL) < 0) die("bind the container's ptmx over", "/dev/ptmx");
  }
}

/*
 * podman's masked and read-only paths: kernel interfaces a container has no business reading
 * (/proc/kcore, /proc/keys, firmware tables) or writing (/proc/sys, /proc/sysrq-trigger).
 * Masked files get /dev/null over them, masked directories an empty read-only tmpfs.
 * Not with -U (--privileged).
 */
static void mask_paths(const char *root) {
  if (unmasked) return;
  static const char *masked[] = {"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                                 "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
                                 "/sys/dev/block"};
  static const char *readonly[] = {"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  char p[4096], null[4096];
  snprintf(null, sizeof null, "%s/dev/null", root);
  for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
    struct stat st;
    snprintf(p, sizeof p, "%s%s", root, masked[i]);
    if (lstat(p, &st) != 0) continue;
    int r = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555")
                                : mount(null, p, NULL, MS_BIND, NULL);
    if (r < 0) die("mask", masked[i]);
  }
  for (size_t i = 0; i < sizeof readonly / sizeof readonly[0]; i++) {
    snprintf(p, sizeof p, "%s%s", root, readonly[i]);
    if (access(p, F_OK) != 0) continue;
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind", readonly[i]);
    if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(p), NULL) < 0) die("make read-only", readonly[i]);
  }
}

static char bind_specs[MAX_MOUNTS][4096];
static const char *bind_dst[MAX_MOUNTS];
static const char *bind_data[MAX_MOUNTS];

/*
 * -R, first half: opens the root and every bind source (O_PATH) while the child still has the
 * caller's identity. After become_mapped_root() the container's ids may not even be allowed to
 * look up those paths (the user's 0700 state directory, as seen by a subordinate id); the mounts
 * then go through /proc/self/fd/N, which needs no lookup. Also before the staging tmpfs hides /tmp.
 */
static void open_root_sources(void) {
  int host = !strcmp(root_mode, "host");
  root_fd = open(host ? "/" : root_mode, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) die("open the root", root_mode);
  for (int i = 0; i < nbinds; i++) {
    snprintf(bind_specs[i], sizeof bind_specs[i], "%s", binds[i]);
    char *colon = strchr(bind_specs[i], ':');
    if (!colon) die(mount_kind[i] == 2 ? "parse the tmpfs (expected DST:OPTIONS)" : "parse the bind (expected SRC:DST)", binds[i]);
    *colon = 0;
    bind_fd[i] = -1;
    if (mount_kind[i] == 2) {
      /* -M DST:OPTIONS */
      bind_dst[i] = bind_specs[i];
      bind_data[i] = colon + 1;
      continue;
    }
    bind_dst[i] = colon + 1;
    bind_fd[i] = open(bind_specs[i], O_PATH | O_CLOEXEC);
    if (bind_fd[i] < 0) die("open", bind_specs[i]);
  }
}

/* True when `id` of the parent namespace is mapped in /proc/self/{uid,gid}_map. */
static int mapped_here(const char *file, unsigned long id) {
  FILE *f = fopen(file, "r");
  if (!f) return 1;
  unsigned long inside, outside, count;
  int found = 0;
  while (fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3)
    if (id >= outside && id - outside < count) found = 1;
  fclose(f);
  return found;
}

/* True when container id 0 is mapped in `file`. */
static int zero_mapped(const char *file) {
  FILE *f = fopen(file, "r");
  if (!f) return 0;
  unsigned long inside, outside, count;
  int found = 0;
  while (fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3)
    if (inside == 0 && count > 0) found = 1;
  fclose(f);
  return found;
}

/*
 * With a map that leaves the caller's own ids out (--userns nomap or auto, or explicit maps), the
 * child would run as the overflow id: it could create no file and the container's command would
 * not be the container's root. Become root of the new namespace instead (podman runs the command
 * as the container's uid 0 in these modes). keep-id and host map the caller and change nothing.
 */
static void become_mapped_root(void) {
  int uid_ok = mapped_here("/proc/self/uid_map", parent_uid);
  int gid_ok = mapped_here("/proc/self/gid_map", parent_gid);
  if (uid_ok && gid_ok) return;
  if (!zero_mapped("/proc/self/uid_map") || !zero_mapped("/proc/self/gid_map")) {
    fprintf(stderr, "burrow-ns: the user namespace maps neither the caller (uid %lu, gid %lu) nor the container's root (id 0): map 0 with --uidmap and --gidmap\n", (unsigned long)parent_uid, (unsigned long)parent_gid);
    _exit(125);
  }
  if (setresgid(0, 0, 0) < 0) die("become the namespace's root group", "setresgid(0)");
  /* The caller's supplementary groups are unmapped here; drop them where setgroups is allowed. */
  if (setgroups(0, NULL) < 0 && errno != EPERM) die("drop the supplementary groups", "setgroups");
  if (setresuid(0, 0, 0) < 0) die("become the namespace's root", "setresuid(0)");
  /* Changing ids clears the parent-death signal and makes the process non-dumpable
   * (prctl(2), proc(5)): restore both, or a burrow killed with -9 would leave this container
   * running, and the caller could no longer open the init's /proc/PID/ns files to join it. */
  if (prctl(PR_SET_DUMPABLE, 1) < 0) die("stay joinable", "PR_SET_DUMPABLE");
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("die with the caller", "PR_SET_PDEATHSIG");
  if (!new_pid_ns && getppid() != helper_pid) _exit(125); /* the helper died in between */
}

/*
 * -R, second half: builds the container's root under a staging tmpfs and pivots into it. The
 * staging tmpfs sits on /tmp (the container gets a private /tmp anyway), so no host directory is
 * needed.
 */
static void setup_root(void) {
  const char *root = "/tmp/.burrow-root";
  int host = !strcmp(root_mode, "host");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make private", "/");
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) die("mount a tmpfs on", "/tmp");
  mkdir(root, 0755);
  char src[64];
  snprintf(src, sizeof src, "/proc/self/fd/%d", root_fd);
  if (mount(src, root, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind", host ? "/" : root_mode);
  close(root_fd);
  if (host) remount_tree_ro(root);
  if (host_devices) host_dev(root);
  else minimal_dev(root);
  own_devpts(root);
  tmpfs_at(root, "/tmp", "mode=1777");
  tmpfs_at(root, "/run", "mode=0755");
  tmpfs_at(root, "/dev/shm", "mode=1777");
  char p[4096];
  snprintf(p, sizeof p, "%s/proc", root);
  mkdir(p, 0555);
  if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount proc on", "/proc");
  /* A read-only sysfs of the container's own network namespace, as podman mounts one: the host's
   * /sys (bound with the host root) would show the host's links under /sys/class/net. It fails
   * where the container's user namespace does not own its network namespace (rootless --network
   * host): the host root's /sys then stays, and a rootfs keeps an empty /sys. */
  snprintf(p, sizeof p, "%s/sys", root);
  mkdir(p, 0555);
  mount("sysfs", p, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
  mask_paths(root);
  if (read_only_root) {
    /* podman's --read-only keeps /var/tmp writable too */
    snprintf(p, sizeof p, "%s/var/tmp", root);
    if (access(p, F_OK) == 0) tmpfs_at(root, "/var/tmp", "mode=1777");
  }
  for (int i = 0; i < nbinds; i++) {
    snprintf(p, sizeof p, "%s%s", root, bind_dst[i]);
    if (mount_kind[i] == 2) {
      mkdir_p(p);
      if (access(p, F_OK) != 0) {
        fprintf(stderr, "burrow-ns: cannot create the mount point \"%s\": the container's root is read-only there; "
                        "mount under /tmp, /run or onto a path that exists\n", bind_dst[i]);
        _exit(125);
      }
      if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV | mount_flags[i], bind_data[i]) < 0) die("mount a tmpfs on", bind_dst[i]);
      continue;
    }
    struct stat st;
    if (fstat(bind_fd[i], &st) < 0) die("stat", bind_specs[i]);
    char spec[64];
    snprintf(spec, sizeof spec, "/proc/self/fd/%d", bind_fd[i]);
    if (S_ISDIR(st.st_mode)) mkdir_p(p);
    else if (access(p, F_OK) != 0) {
      /* the target must exist to be mounted over; only possible where the root is writable */
      int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd >= 0) close(fd);
    }
    if (access(p, F_OK) != 0) {
      fprintf(stderr, "burrow-ns: cannot create the mount point \"%s\": the container's root is read-only there; "
                      "mount under /tmp, /run or onto a path that exists\n", bind_dst[i]);
      _exit(125);
    }
    /* recursive, as podman's default rbind: what is mounted below the source comes along */
    if (mount(spec, p, NULL, MS_BIND | (mount_norec[i] ? 0 : MS_REC), NULL) < 0) die("bind-mount over", bind_dst[i]);
    int ro = mount_kind[i] == 0;
    if (ro || mount_flags[i]) {
      if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | (ro ? MS_RDONLY : 0) | kept_flags(p) | mount_flags[i], NULL) < 0 && ro)
        die("make read-only", bind_dst[i]);
      if (ro && !mount_norec[i]) remount_tree_ro(p);
    }
    close(bind_fd[i]);
  }
  /* --read-only last: every mount point above was made while the root was writable */
  if (read_only_root && !host && mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(root), NULL) < 0)
    die("make read-only", root_mode);
  if (chdir(root) < 0) die("enter", root);
  /* pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours. */
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root into", host ? "the host's root" : root_mode);
  if (umount2(".", MNT_DETACH) < 0) die("detach the old root", "/");
  if (chdir("/") < 0) die("enter", "/");
}

/* -w: one byte on send_sock means "configured, go on"; EOF means abort. */
static int wait_for_go(void) {
  char b;
  ssize_t n;
  do n = read(send_sock, &b, 1); while (n < 0 && errno == EINTR);
  return n == 1 ? 0 : -1;
}

/* -F: serve CONNECT requests on send_sock until it is closed. */
static int socket_factory(void) {
  char req[128];
  for (;;) {
    ssize_t n;
    do n = recv(send_sock, req, sizeof req - 1, 0); while (n < 0 && errno == EINTR);
    if (n <= 0) return 0;
    req[n] = 0;
    int fam = 0, port = 0;
    char addr[64] = "";
    char reply[64] = "ERR EINVAL";
    int fd = -1;
    if (sscanf(req, "CONNECT %d %d %63s", &fam, &port, addr) == 3 && (fam == 4 || fam == 6) && port > 0 && port < 65536) {
      struct sockaddr_storage ss;
      memset(&ss, 0, sizeof ss);
      socklen_t len;
      int ok;
      if (fam == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        ok = inet_pton(AF_INET, addr, &a->sin_addr);
        len = sizeof *a;
      } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        ok = inet_pton(AF_INET6, addr, &a->sin6_addr);
        len = sizeof *a;
      }
      if (ok == 1) {
        fd = socket(fam == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {1, 0}; /* a local connect is immediate; never stall the caller long */
        int one = 1;
        if (fd >= 0) {
          setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) == 0) {
          strcpy(reply, "OK");
        } else {
          const char *name = strerrorname_np(errno);
          snprintf(reply, sizeof reply, "ERR %s", name ? name : "EIO");
          if (fd >= 0) close(fd);
          fd = -1;
        }
      }
    }
    int w = send_with_fds(send_sock, reply, &fd, fd >= 0 ? 1 : 0);
    if (fd >= 0) close(fd);
    if (w < 0) return 0;
  }
}

/* Enters PID's namespace of type `ns` ("net", "uts", "ipc"); prints why on failure. */
static int join_one(const char *pid, const char *ns, int type) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%s/ns/%s", pid, ns);
  int n = open(p, O_RDONLY | O_CLOEXEC);
  if (n < 0 || setns(n, type) < 0) {
    fprintf(stderr, "burrow-ns: cannot join the %s namespace of pid %s: %s\n", ns, pid, strerror(errno));
    if (n >= 0) close(n);
    return -1;
  }
  close(n);
  return 0;
}

/*
 * -j PID: enter PID's user namespace (unless it is ours) and its network namespace. With
 * `become_root`, become root there at once (the caller execs next).
 */
static int join_user(const char *pid, int become_root) {
  char p[64];
  struct stat mine, theirs;
  snprintf(p, sizeof p, "/proc/%s/ns/user", pid);
  int u = open(p, O_RDONLY | O_CLOEXEC);
  if (u < 0 || fstat(u, &theirs) < 0 || stat("/proc/self/ns/user", &mine) < 0) {
    fprintf(stderr, "burrow-ns: cannot open %s: %s\n", p, strerror(errno));
    return -1;
  }
  if (mine.st_ino != theirs.st_ino || mine.st_dev != theirs.st_dev) {
    if (setns(u, CLONE_NEWUSER) < 0) {
      fprintf(stderr, "burrow-ns: cannot join the user namespace of pid %s: %s\n", pid, strerror(errno));
      return -1;
    }
    /* Become root of that namespace: setns grants every capability there, but an execve as
     * another uid (our own uid is mapped to itself with --userns keep-id) would drop them. */
    if (become_root && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
      fprintf(stderr, "burrow-ns: cannot become root in the user namespace of pid %s: %s\n", pid, strerror(errno));
      return -1;
    }
  }
  close(u);
  return 0;
}

/*
 * -j PATH (a path, not a pid): enter the network namespace bound at PATH, as slirp4netns
 * --netns-type=path does, after the user namespace at -Y USERNS or, without -Y, the one that owns
 * the network namespace (NS_GET_USERNS) when it is not ours and we may enter it.
 */
static int join_path(const char *netns, const char *userns, int become_root) {
  int n = open(netns, O_RDONLY | O_CLOEXEC);
  if (n < 0) {
    fprintf(stderr, "burrow-ns: cannot open the network namespace %s: %s\n", netns, strerror(errno));
    return -1;
  }
  int u = userns ? open(userns, O_RDONLY | O_CLOEXEC) : ioctl(n, NS_GET_USERNS);
  if (u < 0 && userns) {
    fprintf(stderr, "burrow-ns: cannot open the user namespace %s: %s\n", userns, strerror(errno));
    close(n);
    return -1;
  }
  struct stat mine, theirs;
  if (u >= 0 && fstat(u, &theirs) == 0 && stat("/proc/self/ns/user", &mine) == 0 && (mine.st_ino != theirs.st_ino || mine.st_dev != theirs.st_dev)) {
    if (setns(u, CLONE_NEWUSER) < 0) {
      /* not ours to enter (an owner above us): try the network namespace alone */
      if (userns) {
        fprintf(stderr, "burrow-ns: cannot join the user namespace %s: %s\n", userns, strerror(errno));
        close(u);
        close(n);
        return -1;
      }
    } else if (become_root && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
      fprintf(stderr, "burrow-ns: cannot become root in the user namespace of %s: %s\n", netns, strerror(errno));
      close(u);
      close(n);
      return -1;
    }
  }
  if (u >= 0) close(u);
  if (setns(n, CLONE_NEWNET) < 0) {
    fprintf(stderr, "burrow-ns: cannot join the network namespace %s: %s\n", netns, strerror(errno));
    close(n);
    return -1;
  }
  close(n);
  return 0;
}

static const char *join_userns = NULL;

static int join(const char *pid, int become_root) {
  if (pid[0] == '/') return join_path(pid, join_userns, become_root);
  return join_user(pid, become_root) < 0 ? -1 : join_one(pid, "net", CLONE_NEWNET);
}

/*
 * -j PID with -B SRC:DST: a private mount namespace with SRC bound over DST, so a program run in
 * a user's network namespace finds its own directories where it expects the system's (/run,
 * /var/lib: plugins keep state there), as podman's rootless netns does.
 */
static int private_binds(void) {
  if (!nbinds) return 0;
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
    fprintf(stderr, "burrow-ns: cannot make a mount namespace: %s\n", strerror(errno));
    return -1;
  }
  for (int k = 0; k < nbinds; k++) {
    char *spec = strdup(binds[k]), *colon = strchr(spec, ':');
    if (!colon || mount_kind[k] != 0) {
      fprintf(stderr, "burrow-ns: -j takes -B SRC:DST binds only, not \"%s\"\n", binds[k]);
      return -1;
    }
    *colon = 0;
    if (mount(spec, colon + 1, NULL, MS_BIND | MS_REC, NULL) < 0) {
      fprintf(stderr, "burrow-ns: cannot bind %s over %s: %s\n", spec, colon + 1, strerror(errno));
      return -1;
    }
    free(spec);
  }
  return 0;
}

/* -c, first half: drops what cap_keep lacks from the bounding set, so no later exec regains it. */
static void drop_bounding(void) {
  if (!cap_set) return;
  int last = 40;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
  if (f) {
    if (fscanf(f, "%d", &last) != 1) last = 40;
    fclose(f);
  }
  for (int c = 0; c <= last && c < 64; c++) {
    if (cap_keep & (1ULL << c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) die("drop a capability from the bounding set", "-c");
  }
}

/*
 * -c, second half: keeps only cap_keep in our own sets (the command's, just before it execs).
 * With `ambient` (-Z), what is kept is also made inheritable and, for a caller that is not uid 0
 * (whose exec would drop it), ambient.
 */
static void restrict_sets_to(int ambient) {
  if (!cap_set) return;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capget, &h, d) < 0) die("read the capabilities", "capget");
  for (int i = 0; i < 2; i++) {
    uint32_t keep = (uint32_t)(cap_keep >> (32 * i));
    d[i].effective &= keep;
    d[i].permitted &= keep;
    d[i].inheritable = ambient ? d[i].permitted : d[i].inheritable & keep;
  }
  if (syscall(SYS_capset, &h, d) < 0) die("set the capabilities", "capset");
  if (ambient && getuid() != 0)
    for (int c = 0; c < 64; c++)
      if ((d[c / 32].permitted >> (c % 32)) & 1) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
}

static void restrict_sets(void) {
  restrict_sets_to(0);
}

/* -u: the command's uid, gid and supplementary groups (ids of the container). */
static void switch_user(void) {
  if (!user_set) return;
  if (setgroups((size_t)run_ngroups, run_groups) < 0 && !(errno == EPERM && run_ngroups == 0)) {
    int e = errno;
    fprintf(stderr, "burrow-ns: cannot set the supplementary groups of user %s: %s%s\n", user_spec, strerror(e),
            e == EPERM ? " (this user namespace denies setgroups: it maps only the caller)" : "");
    _exit(125);
  }
  if (setresgid(run_gid, run_gid, run_gid) < 0) die("switch to the group of user", user_spec);
  if (setresuid(run_uid, run_uid, run_uid) < 0) die("switch to user", user_spec);
  /* changing ids clears the parent-death signal: a command outside a pid namespace keeps it */
  if (!new_pid_ns) prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/*
 * -T FD: opens a terminal in the container's devpts, sends "PTY" with the master on FD, and waits
 * for one byte back (the caller has set the window size: the command starts with it). The slave
 * is kept for the command (attach_console).
 */
static void make_console(void) {
  int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) die("open a terminal on", "/dev/ptmx");
  int unlock = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0) die("unlock the terminal", "/dev/ptmx");
  int sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (sl < 0) die("open the terminal's peer of", "/dev/ptmx");
  if (send_with_fds(console_sock, "PTY", &m, 1) < 0) die("hand back the terminal on", "-T");
  close(m);
  char b;
  ssize_t n;
  do n = read(console_sock, &b, 1); while (n < 0 && errno == EINTR);
  if (n != 1) _exit(125); /* the caller went away */
  close(console_sock);
  console_sock = -1;
  console_slave = sl;
}

/* In the command's process: a new session whose controlling terminal is the console, on 0, 1, 2. */
static void attach_console(void) {
  if (console_slave < 0) return;
  if (setsid() < 0) die("start a session for", "the terminal");
  if (ioctl(console_slave, TIOCSCTTY, 0) < 0) die("take the terminal", "TIOCSCTTY");
  for (int fd = 0; fd < 3; fd++)
    if (dup2(console_slave, fd) < 0) die("put the terminal on", "stdio");
  if (console_slave > 2) close(console_slave);
}

static void exec_or_die(void);

/*
 * -Z: confines the command as slirp4netns's --enable-sandbox confines slirp4netns, in the caller's
 * own user namespace (no clone, same pid): a private mount namespace whose root is an empty tmpfs,
 * read-only once built, holding only the -B binds (read-only) and -V binds (writable), each at
 * its own path (SRC:DST), and the host's top-level /bin, /lib, /lib64... as they are (the
 * merged-/usr symlinks, or read-only binds); then no_new_privs and only the -c capabilities (in
 * the ambient set too when the caller is not uid 0, so they survive the exec). Sources are opened
 * (O_PATH, in the new namespace: a bind's source must be one of its mounts) before the staging
 * tmpfs covers /tmp, and mounted through /proc/self/fd.
 */
static int sandbox_mode;

static void sandbox_bind(const char *stage, int fd, const char *dst, int writable, unsigned long extra, int norec) {
  char to[4096], from[64];
  struct stat st;
  snprintf(to, sizeof to, "%s%s", stage, dst);
  snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
  if (fstat(fd, &st) < 0) die("stat", dst);
  if (S_ISDIR(st.st_mode)) mkdir_p(to);
  else {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", to);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
      *slash = 0;
      mkdir_p(parent);
    }
    int f = open(to, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (f >= 0) close(f);
  }
  if (mount(from, to, NULL, MS_BIND | (norec ? 0 : MS_REC), NULL) < 0) die("bind into the sandbox", dst);
  if (writable) {
    if (extra && mount(NULL, to, NULL, MS_REMOUNT | MS_BIND | extra | kept_flags(to), NULL) < 0) die("remount in the sandbox", dst);
  } else {
    if (mount(NULL, to, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | extra | kept_flags(to), NULL) < 0) die("make read-only in the sandbox", dst);
    remount_tree_ro(to);
  }
}

static void make_sandbox(void) {
  static const char *top[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
  if (unshare(CLONE_NEWNS) < 0) {
    int e = errno;
    fprintf(stderr, "burrow-ns: cannot unshare a mount namespace for the sandbox: %s%s\n", strerror(e),
            e == EPERM ? " (the sandbox needs CAP_SYS_ADMIN in its user namespace, which podman's rootless user namespace gives)" : "");
    _exit(125);
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make private", "/");
  int fds[MAX_MOUNTS];
  char specs[MAX_MOUNTS][4096];
  const char *dsts[MAX_MOUNTS];
  for (int k = 0; k < nbinds; k++) {
    if (mount_kind[k] == 2) {
      fprintf(stderr, "burrow-ns: -Z takes -B and -V binds only, not -M \"%s\"\n", binds[k]);
      _exit(2);
    }
    snprintf(specs[k], sizeof specs[k], "%s", binds[k]);
    char *colon = strchr(specs[k], ':');
    if (colon) *colon = 0;
    dsts[k] = colon ? colon + 1 : specs[k];
    if (dsts[k][0] != '/') {
      fprintf(stderr, "burrow-ns: -Z binds need absolute paths, not \"%s\"\n", binds[k]);
      _exit(2);
    }
    fds[k] = open(specs[k], O_PATH | O_CLOEXEC);
    if (fds[k] < 0) die("open for the sandbox", specs[k]);
  }
  int topfd[6];
  char link[6][4096];
  for (int t = 0; t < 6; t++) {
    char p[64];
    struct stat st;
    snprintf(p, sizeof p, "/%s", top[t]);
    topfd[t] = -1;
    link[t][0] = 0;
    if (lstat(p, &st) < 0) continue;
    if (S_ISLNK(st.st_mode)) {
      ssize_t n = readlink(p, link[t], sizeof link[t] - 1);
      link[t][n > 0 ? n : 0] = 0;
    } else if (S_ISDIR(st.st_mode)) topfd[t] = open(p, O_PATH | O_CLOEXEC);
  }
  const char *stage = "/tmp";
  if (mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755") < 0) die("mount the sandbox's tmpfs on", stage);
  for (int t = 0; t < 6; t++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", stage, top[t]);
    if (link[t][0] && symlink(link[t], p) < 0) die("link in the sandbox", top[t]);
    if (topfd[t] >= 0) {
      char d[64];
      snprintf(d, sizeof d, "/%s", top[t]);
      sandbox_bind(stage, topfd[t], d, 0, MS_NOSUID | MS_NODEV, 0);
      close(topfd[t]);
    }
  }
  /* read-only binds first: a writable one may sit below one of them (a socket's directory in /run) */
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < nbinds; k++) {
      if (mount_kind[k] != pass) continue;
      sandbox_bind(stage, fds[k], dsts[k], pass == 1, mount_flags[k] & ~MS_RDONLY, mount_norec[k]);
      close(fds[k]);
    }
  if (chdir(stage) < 0) die("enter", stage);
  if (mkdir("old", 0700) < 0 && errno != EEXIST) die("make", "old");
  if (syscall(SYS_pivot_root, ".", "old") < 0) die("pivot_root into", stage);
  if (chdir("/") < 0) die("enter", "/");
  if (umount2("/old", MNT_DETACH) < 0) die("detach", "the old root");
  rmdir("/old");
  if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags("/"), NULL) < 0) die("make read-only", "the sandbox's root");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("set", "no_new_privs");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die("clear", "the ambient capabilities");
  if (cap_set) {
    drop_bounding();
    restrict_sets_to(1);
  }
}

/* The command's process, from here to exec: its terminal, its user, its capabilities. */
static void become_command(void) {
  attach_console();
  switch_user();
  restrict_sets();
  if (no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("set", "no_new_privs");
  exec_or_die();
}

/* The init's name in ps and /proc/PID/cmdline: "burrow-init" over the helper's long argv. */
static void name_init(void) {
  if (all_argc < 1) return;
  char *start = all_argv[0];
  char *end = all_argv[all_argc - 1] + strlen(all_argv[all_argc - 1]);
  size_t room = (size_t)(end - start);
  memset(start, 0, room);
  snprintf(start, room + 1, "%s", "burrow-init");
  prctl(PR_SET_NAME, "burrow-init");
}

static void on_pause_signal(int sig) {
  (void)sig;
  pause_done = 1;
}

static void forward(int sig) {
  if (forward_to > 0) kill(forward_to, sig);
}

static void install_forwarding(void) {
  int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

static int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

/* execvp the target; on failure report it and exit 127 (not found) or 126, as a shell does. */
static void exec_or_die(void) {
  execvp(target[0], target);
  int e = errno;
  fprintf(stderr, "burrow-ns: cannot execute \"%s\": %s\n", target[0], strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

static int child_main(void *arg) {
  /* The namespace's first process dies with the helper, and the helper with its caller: a
   * burrow killed with -9 leaves no container behind (PR_SET_PDEATHSIG survives execve). */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  pid_t pp = getppid(); /* 0 in a new pid namespace: the parent is outside it */
  if (pp != 0 && pp != (pid_t)(intptr_t)arg) _exit(125);
  close(sync_pipe[1]);
  char go = 0;
  if (read(sync_pipe[0], &go, 1) != 1 || go != 'G') _exit(125);
  close(sync_pipe[0]);
  if ((tap_name || send_sock >= 0) && hand_back() < 0) _exit(125);
  if (send_sock >= 0) {
    if (wait_go && wait_for_go() < 0) _exit(125);
    close(send_sock);
  }
  if (new_net_ns) lo_up();
  if (root_mode) open_root_sources();
  become_mapped_root();
  if (hostname && sethostname(hostname, strlen(hostname)) < 0) die("set the hostname", hostname);
  if (root_mode) setup_root();
  if (workdir && chdir(workdir) < 0) die("change to the working directory", workdir);
  drop_bounding();
  if (pause_mode) {
    name_init();
    restrict_sets();
    /* The infra process: holds the namespaces, reaps what joins its pid namespace, exits 0 on
     * SIGTERM or SIGINT. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_pause_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    while (!pause_done) {
      pause();
      while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    _exit(0);
  }
  if (console_sock >= 0) make_console();
  if (!new_pid_ns) become_command();
  /* pid 1 of the new pid namespace: a minimal init. */
  pid_t cmd = fork();
  if (cmd < 0) _exit(125);
  if (cmd == 0) become_command();
  if (console_slave >= 0) close(console_slave);
  name_init(); /* the command has its own copy of argv now */
  forward_to = cmd;
  install_forwarding();
  int status = 0, code = 0;
  for (;;) {
    pid_t p = waitpid(-1, &status, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: everyone is reaped */
    }
    if (p == cmd) {
      /* The command is the container: when it ends, so does the namespace (the kernel kills
       * what is left once pid 1 exits), as with podman and catatonit. */
      code = exit_code(status);
      break;
    }
  }
  _exit(code);
}

/*
 * -X PID: runs CMD in every namespace of PID (user when it is not ours, then ipc, uts, net, pid
 * and mnt) with PID's root, like `nsenter -a -r`: a forked child (so that it is in the pid
 * namespace), with -C, -c, -u, -N and -T as for a new container. Exits with the command's status.
 */
static int exec_in(const char *pid) {
  static const char *names[] = {"user", "ipc", "uts", "net", "pid", "mnt"};
  static const int types[] = {CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWNS};
  int fds[6];
  char p[64];
  for (int i = 0; i < 6; i++) {
    snprintf(p, sizeof p, "/proc/%s/ns/%s", pid, names[i]);
    fds[i] = open(p, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) {
      fprintf(stderr, "burrow-ns: cannot open %s: %s\n", p, strerror(errno));
      return 125;
    }
  }
  snprintf(p, sizeof p, "/proc/%s/root", pid);
  int root = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    fprintf(stderr, "burrow-ns: cannot open %s: %s\n", p, strerror(errno));
    return 125;
  }
  struct stat mine, theirs;
  int same_user = stat("/proc/self/ns/user", &mine) == 0 && fstat(fds[0], &theirs) == 0 && mine.st_ino == theirs.st_ino && mine.st_dev == theirs.st_dev;
  for (int i = same_user ? 1 : 0; i < 6; i++) {
    if (setns(fds[i], types[i]) < 0) {
      fprintf(stderr, "burrow-ns: cannot join the %s namespace of pid %s: %s\n", names[i], pid, strerror(errno));
      return 125;
    }
    close(fds[i]);
  }
  if (fchdir(root) < 0 || chroot(".") < 0) die("enter the root of pid", pid);
  close(root);
  if (chdir(workdir ? workdir : "/") < 0) die("change to the working directory", workdir ? workdir : "/");
  drop_bounding();
  if (console_sock >= 0) make_console();
  if (!exec_detached) prctl(PR_SET_PDEATHSIG, SIGKILL);
  helper_pid = getpid();
  pid_t c = fork();
  if (c < 0) return 125;
  if (c == 0) {
    if (exec_detached) {
      /* exec -d: its own session, reparented to the container's init once we return, and no
       * tie to the caller's stdio (a caller waiting for its pipes would wait for the command) */
      setsid();
      int null = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (null < 0) _exit(125);
      for (int fd = 0; fd < 3; fd++) dup2(null, fd);
    } else {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != helper_pid && getppid() != 0) _exit(125);
    }
    new_pid_ns = 1; /* switch_user: the pid namespace's init kills us with the container */
    become_command();
  }
  if (exec_detached) {
    printf("%d\n", (int)c);
    return 0;
  }
  if (console_slave >= 0) close(console_slave);
  forward_to = c;
  install_forwarding();
  int status = 0;
  while (waitpid(c, &status, 0) < 0) {
    if (errno != EINTR) return 125;
  }
  return exit_code(status);
}

/* -u UID:GID[:G1,G2,...] */
static int parse_user(const char *spec) {
  char *end = NULL;
  user_spec = spec;
  unsigned long u = strtoul(spec, &end, 10);
  if (end == spec || *end != ':') return -1;
  const char *g = end + 1;
  unsigned long gid = strtoul(g, &end, 10);
  if (end == g || (*end && *end != ':')) return -1;
  run_uid = (uid_t)u;
  run_gid = (gid_t)gid;
  run_ngroups = 0;
  if (*end == ':') {
    const char *q = end + 1;
    while (*q) {
      if (run_ngroups >= 64) return -1;
      unsigned long x = strtoul(q, &end, 10);
      if (end == q || (*end && *end != ',')) return -1;
      run_groups[run_ngroups++] = (gid_t)x;
      q = *end ? end + 1 : end;
    }
  }
  user_set = 1;
  return 0;
}

static int parse_flags(const char *list) {
  int flags = 0;
  char *copy = strdup(list), *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (!strcmp(tok, "net")) flags |= CLONE_NEWNET;
    else if (!strcmp(tok, "mnt")) flags |= CLONE_NEWNS;
    else if (!strcmp(tok, "pid")) flags |= CLONE_NEWPID;
    else if (!strcmp(tok, "uts")) flags |= CLONE_NEWUTS;
    else if (!strcmp(tok, "ipc")) flags |= CLONE_NEWIPC;
    else {
      fprintf(stderr, "burrow-ns: unknown namespace \"%s\" (known: net, mnt, pid, uts, ipc)\n", tok);
      exit(2);
    }
  }
  free(copy);
  return flags;
}

int main(int argc, char **argv) {
  int flags = 0, i = 1;
  all_argv = argv;
  all_argc = argc;
  const char *join_pid = NULL, *share_pid = NULL, *exec_pid = NULL, *inside_pid = NULL;
  int factory = 0;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "-n") && i + 1 < argc) flags |= parse_flags(argv[++i]);
    else if (!strcmp(argv[i], "-t") && i + 1 < argc) tap_name = argv[++i];
    else if (!strcmp(argv[i], "-s") && i + 1 < argc) send_sock = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-j") && i + 1 < argc) join_pid = argv[++i];
    else if (!strcmp(argv[i], "-Y") && i + 1 < argc) join_userns = argv[++i];
    else if (!strcmp(argv[i], "-w")) wait_go = 1;
    else if (!strcmp(argv[i], "-R") && i + 1 < argc) root_mode = argv[++i];
    else if ((!strcmp(argv[i], "-B") || !strcmp(argv[i], "-V") || !strcmp(argv[i], "-M")) && i + 1 < argc) {
      if (nbinds >= MAX_MOUNTS) {
        fprintf(stderr, "burrow-ns: more than %d mounts\n", MAX_MOUNTS);
        return 2;
      }
      mount_kind[nbinds] = argv[i][1] == 'B' ? 0 : argv[i][1] == 'V' ? 1 : 2;
      binds[nbinds++] = argv[++i];
    }
    else if (!strcmp(argv[i], "-E") && i + 1 < argc && nbinds > 0) {
      /* options of the mount before: nosuid, nodev, noexec, norec */
      char *copy = strdup(argv[++i]), *save = NULL;
      for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "nosuid")) mount_flags[nbinds - 1] |= MS_NOSUID;
        else if (!strcmp(tok, "nodev")) mount_flags[nbinds - 1] |= MS_NODEV;
        else if (!strcmp(tok, "noexec")) mount_flags[nbinds - 1] |= MS_NOEXEC;
        else if (!strcmp(tok, "norec")) mount_norec[nbinds - 1] = 1;
        else if (!strcmp(tok, "ro")) mount_flags[nbinds - 1] |= MS_RDONLY;
        else {
          fprintf(stderr, "burrow-ns: unknown mount option \"%s\" (known: nosuid, nodev, noexec, norec, ro)\n", tok);
          return 2;
        }
      }
      free(copy);
    }
    else if (!strcmp(argv[i], "-u") && i + 1 < argc) {
      if (parse_user(argv[++i]) < 0) {
        fprintf(stderr, "burrow-ns: -u wants UID:GID[:GROUP,...] (numbers), not \"%s\"\n", argv[i]);
        return 2;
      }
    }
    else if (!strcmp(argv[i], "-T") && i + 1 < argc) console_sock = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-X") && i + 1 < argc) exec_pid = argv[++i];
    else if (!strcmp(argv[i], "-N")) no_new_privs = 1;
    else if (!strcmp(argv[i], "-d")) exec_detached = 1;
    else if (!strcmp(argv[i], "-r")) read_only_root = 1;
    else if (!strcmp(argv[i], "-D")) host_devices = 1;
    else if (!strcmp(argv[i], "-U")) unmasked = 1;
    else if (!strcmp(argv[i], "-H") && i + 1 < argc) hostname = argv[++i];
    else if (!strcmp(argv[i], "-C") && i + 1 < argc) workdir = argv[++i];
    else if (!strcmp(argv[i], "-F")) factory = 1;
    else if (!strcmp(argv[i], "-Z")) sandbox_mode = 1;
    else if (!strcmp(argv[i], "-J") && i + 1 < argc) share_pid = argv[++i];
    else if (!strcmp(argv[i], "-I") && i + 1 < argc) inside_pid = argv[++i];
    else if (!strcmp(argv[i], "-P")) pause_mode = 1;
    else if (!strcmp(argv[i], "-L")) linger = 1;
    else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
      char *end = NULL;
      cap_keep = strtoull(argv[++i], &end, 16);
      if (!end || *end) {
        fprintf(stderr, "burrow-ns: -c wants a hex capability mask, not \"%s\"\n", argv[i]);
        return 2;
      }
      cap_set = 1;
    }
    else if (!strcmp(argv[i], "--")) { i++; break; }
    else break;
  }
  if (send_sock >= 0) fcntl(send_sock, F_SETFD, FD_CLOEXEC);
  if (console_sock >= 0) fcntl(console_sock, F_SETFD, FD_CLOEXEC);
  if (sandbox_mode) {
    if (i >= argc) {
      fprintf(stderr, "usage: burrow-ns -Z [-B SRC:DST | -V SRC:DST [-E OPTS]]... [-c MASK] -- CMD [ARGS...]\n");
      return 2;
    }
    target = &argv[i];
    make_sandbox();
    exec_or_die();
  }
  if (exec_pid) {
    if (i >= argc) {
      fprintf(stderr, "usage: burrow-ns -X PID [-C DIR] [-c MASK] [-u UID:GID[:G,...]] [-N] [-T FD] -- CMD [ARGS...]\n");
      return 2;
    }
    target = &argv[i];
    return exec_in(exec_pid);
  }
  if (join_pid) {
    if (join(join_pid, 1) < 0 || private_binds() < 0) return 125;
    if (factory) {
      if (send_sock < 0) return 2;
      return socket_factory();
    }
    if ((tap_name || send_sock >= 0) && hand_back() < 0) return 125;
    if (send_sock >= 0) close(send_sock);
    if (i >= argc) return 0;
    target = &argv[i];
    exec_or_die();
  }
  if (i >= argc && !pause_mode) {
    fprintf(stderr, "usage: burrow-ns [-n net,mnt,pid,uts,ipc] [-J PID] [-t TAP] [-s FD] [-c MASK] (-P | -- CMD [ARGS...])\n"
                    "       burrow-ns -j PID [-t TAP] [-s FD] [-- CMD [ARGS...]]\n");
    return 2;
  }
  target = &argv[i];
  if (share_pid) {
    /* Join the user namespace, then net/uts/ipc; the clone below adds no user namespace, and the
     * caller writes no maps. The ids stay the caller's for now: the child opens the root and
     * bind sources with them (in its own mount namespace), then becomes the namespace's root
     * where the caller is not mapped (become_mapped_root), as a new namespace's child does. */
    if (join(share_pid, 0) < 0 || join_one(share_pid, "uts", CLONE_NEWUTS) < 0 || join_one(share_pid, "ipc", CLONE_NEWIPC) < 0) return 125;
    flags &= ~(CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC);
  } else if (inside_pid) {
    /* -I PID: only PID's user namespace (a user's network namespace holder); the -n namespaces
     * are made inside it, owned by it, so what runs as its root there (the network plugins) holds
     * every capability over them. No maps to write, as with -J. */
    if (join_user(inside_pid, 0) < 0) return 125;
    share_pid = inside_pid;
  }
  helper_pid = getpid();
  parent_uid = getuid();
  parent_gid = getgid();
  new_pid_ns = (flags & CLONE_NEWPID) != 0;
  new_net_ns = (flags & CLONE_NEWNET) != 0;
  if (pipe2(sync_pipe, O_CLOEXEC) < 0) return 125;
  size_t stack_size = 1 << 20;
  char *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return 125;
  if (linger) {
    if (!pause_mode) {
      fprintf(stderr, "burrow-ns: -L holds namespaces only: it needs -P\n");
      return 2;
    }
    setsid(); /* no terminal's signals; fails only when already a group leader, which spawn avoids */
  } else {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) return 125; /* the caller is already gone */
  }
  pid_t child = clone(child_main, stack + stack_size, (share_pid ? 0 : CLONE_NEWUSER) | flags | SIGCHLD, (void *)(intptr_t)getpid());
  if (child < 0) {
    int e = errno;
    fprintf(stderr, "burrow-ns: clone(CLONE_NEWUSER) failed: %s (errno %d)\n", strerror(e), e);
    return e == EPERM || e == ENOSPC || e == EUSERS ? 124 : 125;
  }
  close(sync_pipe[0]);
  if (send_sock >= 0) close(send_sock); /* the child's copy is the only one: its exit is EOF */
  dprintf(3, "PID %d\n", (int)child);
  close(3);
  char line[16] = {0};
  ssize_t n = read(4, line, sizeof line - 1);
  close(4);
  char go = (n >= 2 && !strncmp(line, "GO", 2)) ? 'G' : 'X';
  if (write(sync_pipe[1], &go, 1) != 1) go = 'X';
  close(sync_pipe[1]);
  forward_to = child;
  install_forwarding();
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 125;
  }
  return go == 'G' ? exit_code(status) : 125;
}
