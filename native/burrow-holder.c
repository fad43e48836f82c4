/*
 * burrow-holder: holds a detached container once burrow has set it up (podman's conmon).
 *
 * Theory of operation
 * -------------------
 * A detached container is set up by burrow (validate, record, start the namespaces, attach the
 * network, let the command go): by the CLI itself for `burrow run -d` (spawn mode, below), or by a
 * Node supervisor for `burrow start` and the network modes that need Node. Holding the container
 * from then on needs no JavaScript. A supervisor execve()s this program: the same pid and start
 * time (the record stays valid), the same children (the namespace helper stays ours to wait for),
 * and the fds it names left open across the exec. A Node process costs 18-23 MiB of PSS per
 * container; this one costs what conmon does.
 *
 * What it holds and does, in one poll loop:
 *   -p PID      the namespace helper (our child): waited for; SIGINT, SIGTERM, SIGHUP, SIGQUIT,
 *               SIGUSR1 and SIGUSR2 sent to us are sent on to it (it passes them to the command)
 *   -k FD       kept open until teardown has finished: the netns and userns fds (CNI DEL names the
 *               netns as /proc/OURPID/fd/N), the sockets that reserve published host ports
 *   -l FD       the container's k8s-file log (conmon's format), appended to
 *   -o FD -e FD the command's stdout and stderr; -m FD the terminal's master (-t) instead
 *   -i FD       the command's stdin (-i without -t); with -t -I input goes to the master
 *   -s FD -S P  the attach socket, listening, and its path (removed at the end)
 *   -c FD       a client that attached before the hand-over and said HELLO; -C FD one that has
 *               had its INFO but not said HELLO yet
 *   -n NAME -t -I  what the INFO frame tells clients: the name, tty, stdin
 * Clients speak runtime/container/attach_proto.ts: frames of type(1) | length(4, BE) | payload.
 * A client further behind than 8 MiB, or one that sends a bad frame, is dropped; the container
 * never is.
 *
 * The end: once the helper has exited, the output is drained (EOF, or at most 2 s), then the
 * teardown command (the argv after "--", with the exit code appended) runs as our child with
 * stdin, stdout and stderr only: burrow's CNI DEL and record update. Once it has exited, the
 * attach socket is removed, every client gets the EXIT frame (the exit code, after cleanup, as the
 * Node supervisor sends it), and we exit 0. kill -9 of us leaves a record whose pid is dead:
 * `burrow system gc` and every container command collect it, as for a killed Node supervisor; the
 * helper's parent-death signal takes the container down with us.
 *
 * Spawn mode (`burrow run -d` with no Node supervisor): `burrow-holder --spawn CTL LOG -- HELPER
 * ARGS...` is what the CLI starts in place of the namespace helper. It forks and execs the helper
 * with every fd it was given (the helper's PID/GO pipes, its fd socket, the command's stdio), so
 * the helper is our child from the start, and keeps only CTL (a unix socket from the CLI) and LOG
 * (the container's supervisor.log, our stderr). Until the hand-over it is transparent: signals go
 * on to the helper, and when the helper exits we exit with its status. The CLI sets the container
 * up as the supervisor would, then sends on CTL "FDS n1 n2 ..." messages with those fds
 * (SCM_RIGHTS; each lands on the number the CLI had, so the CLI's fd numbers in the hold arguments
 * and in /proc/PID/fd paths hold for us) and one "HOLD\0ARG\0ARG..." message: the hold arguments
 * above but -p, which is the helper's pid, after one "ENV\0NAME=VALUE\0..." message: the
 * teardown's environment (we were started with the container's, which the helper needs). Then we
 * hold as above and the CLI exits. EOF on CTL
 * before HOLD means the CLI died or gave up: we kill the helper (its container goes with it) and
 * exit 125; `system gc` collects the record.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { HELLO = 0x01, STDIN_F = 0x02, STDIN_EOF = 0x03, RESIZE = 0x04, SIGNAL_F = 0x05,
       INFO = 0x11, STDOUT_F = 0x12, STDERR_F = 0x13, EXIT_F = 0x14 };
#define MAX_FRAME (1u << 20)
#define CLIENT_BACKLOG (8u << 20)
#define MAX_CLIENTS 64
#define MAX_KEEP 4096 /* the netns and userns fds, and one socket per published host port (a -p range) */
#define DRAIN_MS 2000
#define FLUSH_MS 2000

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("burrow-holder: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(125);
}

/* A growable byte queue: what is still to be written to an fd. */
struct queue { char *buf; size_t len, cap; };

static void q_push(struct queue *q, const void *data, size_t n) {
  if (q->len + n > q->cap) {
    size_t cap = q->cap ? q->cap : 4096;
    while (cap < q->len + n) cap *= 2;
    char *b = realloc(q->buf, cap);
    if (!b) die("out of memory");
    q->buf = b;
    q->cap = cap;
  }
  memcpy(q->buf + q->len, data, n);
  q->len += n;
}

static void q_drop(struct queue *q, size_t n) {
  memmove(q->buf, q->buf + n, q->len - n);
  q->len -= n;
}

static void q_free(struct queue *q) {
  free(q->buf);
  q->buf = NULL;
  q->len = q->cap = 0;
}

/* Writes what it can without blocking; -1 once the fd is broken. */
static int q_flush(struct queue *q, int fd) {
  while (q->len) {
    ssize_t n = write(fd, q->buf, q->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) return -1;
    q_drop(q, (size_t)n);
  }
  return 0;
}

struct client { int fd; int hello; int dead; struct queue in, out; };

static struct {
  pid_t child;
  int exited, code;
  pid_t teardown;
  int logfd, out, err, in, master, listen;
  const char *sockpath, *name;
  int tty, interactive;
  int in_eof;                 /* a client sent STDIN_EOF: close stdin once its queue is written */
  struct queue inq;           /* for the command's stdin (or the master with -t -I) */
  struct client clients[MAX_CLIENTS];
  int nclients;
  int keep[MAX_KEEP];
  int nkeep;
  char **teardown_argv;
} H = { .logfd = -1, .out = -1, .err = -1, .in = -1, .master = -1, .listen = -1 };

static void set_nonblock_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) die("fd %d is not open", fd);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int parse_fd(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end || v < 0 || v > 1 << 20) die("not an fd: \"%s\"", s);
  if (fcntl((int)v, F_GETFD) < 0) die("fd %ld is not open", v);
  return (int)v;
}

static void frame(struct queue *q, int type, const void *payload, size_t n) {
  unsigned char head[5] = { (unsigned char)type, (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n };
  q_push(q, head, 5);
  if (n) q_push(q, payload, n);
}

static void drop_client(int i) {
  /* what is queued (the INFO sent at accept, before a bad first frame) goes out if it fits now */
  if (H.clients[i].out.len) (void)q_flush(&H.clients[i].out, H.clients[i].fd);
  close(H.clients[i].fd);
  q_free(&H.clients[i].in);
  q_free(&H.clients[i].out);
  H.clients[i] = H.clients[--H.nclients];
}

/* Drops the clients marked dead (they are marked, not dropped, while poll's results are read). */
static void drop_dead(void) {
  for (int i = 0; i < H.nclients; i++) if (H.clients[i].dead) drop_client(i--);
}

static void add_client(int fd, int hello, int informed) {
  if (H.nclients == MAX_CLIENTS) {
    close(fd);
    return;
  }
  set_nonblock_cloexec(fd);
  struct client *c = &H.clients[H.nclients++];
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->hello = hello;
  if (informed) return; /* it had its INFO from the supervisor */
  char info[512];
  int n = snprintf(info, sizeof info, "{\"tty\":%s,\"stdin\":%s,\"name\":\"%s\"}", H.tty ? "true" : "false", H.interactive ? "true" : "false", H.name);
  frame(&c->out, INFO, info, (size_t)n);
}

/* conmon's timestamp: 2026-12-02T02:41:28.274119951+00:00, local time and its offset. */
static void log_time(char *out, size_t n) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  long off = tm.tm_gmtoff / 60;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%09ld%c%02ld:%02ld", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec, sign, off / 60, off % 60);
}

/* One chunk of output: a k8s-file record per line (P for a line not ended yet), and a frame to every client. */
static void emit(int stdout_stream, const char *data, size_t n) {
  if (H.logfd >= 0) {
    char t[128];
    log_time(t, sizeof t);
    struct queue rec = { 0 };
    const char *stream = stdout_stream ? "stdout" : "stderr";
    size_t at = 0;
    while (at < n) {
      const char *nl = memchr(data + at, '\n', n - at);
      size_t end = nl ? (size_t)(nl - data) : n;
      char head[96];
      int h = snprintf(head, sizeof head, "%s %s %c ", t, stream, nl ? 'F' : 'P');
      q_push(&rec, head, (size_t)h);
      q_push(&rec, data + at, end - at);
      q_push(&rec, "\n", 1);
      at = end + 1;
    }
    /* the log is a regular file: a short write means a full disk, which loses lines, never the container */
    size_t off = 0;
    while (off < rec.len) {
      ssize_t w = write(H.logfd, rec.buf + off, rec.len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += (size_t)w;
    }
    q_free(&rec);
  }
  for (int i = 0; i < H.nclients; i++) {
    struct client *c = &H.clients[i];
    if (!c->hello) continue;
    if (c->dead) continue;
    if (c->out.len > CLIENT_BACKLOG) {
      c->dead = 1;
      continue;
    }
    frame(&c->out, stdout_stream ? STDOUT_F : STDERR_F, data, n);
  }
}

static int json_number(const char *json, size_t n, const char *key) {
  char pat[32];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = memmem(json, n, pat, strlen(pat));
  if (!p) return 0;
  const char *end = json + n;
  p += strlen(pat);
  while (p < end && (*p == ' ' || *p == ':' || *p == '\t')) p++;
  long v = 0;
  while (p < end && *p >= '0' && *p <= '9' && v < 0x10000) v = v * 10 + (*p++ - '0');
  return v > 0xffff ? 0xffff : (int)v;
}

static void resize(int rows, int cols) {
  if (!H.tty || H.master < 0 || !rows || !cols) return;
  struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
  ioctl(H.master, TIOCSWINSZ, &ws);
}

static int signal_number(const char *name, size_t n) {
  if (n < 4 || n > 15 || memcmp(name, "SIG", 3)) return 0;
  for (int s = 1; s < NSIG; s++) {
    const char *abbrev = sigabbrev_np(s);
    if (abbrev && strlen(abbrev) == n - 3 && !memcmp(abbrev, name + 3, n - 3)) return s;
  }
  return 0;
}

static int input_fd(void) {
  return H.tty ? (H.interactive ? H.master : -1) : H.in;
}

/* One frame from a client; 0 drops the client. */
static int on_frame(struct client *c, int type, const char *p, size_t n) {
  switch (type) {
    case HELLO:
      c->hello = 1;
      if (H.tty) resize(json_number(p, n, "rows"), json_number(p, n, "cols"));
      return 1;
    case STDIN_F:
      if (input_fd() >= 0 && !H.in_eof) q_push(&H.inq, p, n);
      return 1;
    case STDIN_EOF:
      /* a pipe gets its EOF; a terminal reads ctrl-d as the user typed it */
      if (!H.tty && H.in >= 0) H.in_eof = 1;
      return 1;
    case RESIZE:
      if (n != 4) return 0;
      resize(((unsigned char)p[0] << 8) | (unsigned char)p[1], ((unsigned char)p[2] << 8) | (unsigned char)p[3]);
      return 1;
    case SIGNAL_F: {
      int s = signal_number(p, n);
      if (s && !H.exited) kill(H.child, s);
      return 1;
    }
    default:
      return 0;
  }
}

/* Reads what a client sent; 0 drops it (EOF, error, a bad frame). */
static int on_client_readable(struct client *c) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) return 0;
    q_push(&c->in, buf, (size_t)n);
    while (c->in.len >= 5) {
      const unsigned char *h = (const unsigned char *)c->in.buf;
      uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
      if (len > MAX_FRAME) return 0;
      if (c->in.len < 5 + (size_t)len) break;
      if (!on_frame(c, h[0], c->in.buf + 5, len)) return 0;
      q_drop(&c->in, 5 + (size_t)len);
    }
  }
  return 1;
}

/* Reads output from fd; returns -1 at its end (EOF, or EIO once a terminal's last slave is closed). */
static int on_output(int fd, int is_stdout) {
  char buf[65536];
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) return -1;
    emit(is_stdout, buf, (size_t)n);
  }
  return 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_output(int *fd) {
  if (*fd < 0) return;
  if (*fd != H.master || !H.interactive) close(*fd);
  *fd = -1;
}

/* spawn mode: the teardown's environment (the CLI's; ours is the container's, which the helper needed) */
static char **teardown_env;

static void start_teardown(void) {
  int argc = 0;
  while (H.teardown_argv[argc]) argc++;
  char code[16];
  snprintf(code, sizeof code, "%d", H.code);
  char **argv = calloc((size_t)argc + 2, sizeof *argv);
  if (!argv) die("out of memory");
  memcpy(argv, H.teardown_argv, (size_t)argc * sizeof *argv);
  argv[argc] = code;
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "burrow-holder: cannot start the teardown: %s; \"burrow system gc\" does it\n", strerror(errno));
    H.teardown = -1;
    free(argv);
    return;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (teardown_env) execve(argv[0], argv, teardown_env);
    else execvp(argv[0], argv);
    fprintf(stderr, "burrow-holder: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  free(argv);
  H.teardown = pid;
}

static int is_ours(int fd, const int *pre, int npre) {
  if (fd <= 2 || fd == H.logfd || fd == H.out || fd == H.err || fd == H.in || fd == H.master || fd == H.listen) return 1;
  for (int i = 0; i < H.nkeep; i++) if (H.keep[i] == fd) return 1;
  for (int i = 0; i < npre; i++) if (pre[i] == fd) return 1;
  return 0;
}

/* Closes what the supervisor's own parents left open (a caller's pipe must not wait for our exit). */
static void close_strays(const int *pre, int npre) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  int stray[1024];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 1024) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd != dirfd(d) && !is_ours(fd, pre, npre)) stray[n++] = fd;
  }
  closedir(d);
  for (int i = 0; i < n; i++) close(stray[i]);
}

static void usage(void) {
  die("usage: burrow-holder -p PID [-k FD]... [-l FD] [-o FD -e FD | -m FD] [-i FD] [-s FD -S PATH] [-c FD | -C FD]... [-n NAME] [-t] [-I] -- TEARDOWN...");
}

/* spawn mode: the helper's status when it ended before the HOLD that was already on its way */
static int pre_exited, pre_code;

static int hold_main(int argc, char **argv) {
  int opt;
  int pre_clients[MAX_CLIENTS], pre_hello[MAX_CLIENTS];
  int npre = 0;
  H.name = "";
  while ((opt = getopt(argc, argv, "+p:k:l:o:e:m:i:s:S:c:C:n:tI")) != -1) {
    switch (opt) {
      case 'p': H.child = (pid_t)atoi(optarg); break;
      case 'k':
        if (H.nkeep == MAX_KEEP) die("too many -k fds");
        H.keep[H.nkeep++] = parse_fd(optarg);
        break;
      case 'l': H.logfd = parse_fd(optarg); break;
      case 'o': H.out = parse_fd(optarg); break;
      case 'e': H.err = parse_fd(optarg); break;
      case 'm': H.master = parse_fd(optarg); break;
      case 'i': H.in = parse_fd(optarg); break;
      case 's': H.listen = parse_fd(optarg); break;
      case 'S': H.sockpath = optarg; break;
      case 'c': case 'C':
        if (npre == MAX_CLIENTS) die("too many -c and -C fds");
        pre_hello[npre] = opt == 'c';
        pre_clients[npre++] = parse_fd(optarg);
        break;
      case 'n': H.name = optarg; break;
      case 't': H.tty = 1; break;
      case 'I': H.interactive = 1; break;
      default: usage();
    }
  }
  if (H.child <= 0 || optind >= argc) usage();
  for (const char *p = H.name; *p; p++) if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) die("a name with quotes or control characters");
  H.teardown_argv = argv + optind;

  close_strays(pre_clients, npre);

  /* Node left SIGPIPE ignored and may have left signals blocked: set both as we need them */
  sigset_t mask;
  sigemptyset(&mask);
  int relayed[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
  for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++) sigaddset(&mask, relayed[i]);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_SETMASK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd: %s", strerror(errno));

  for (int i = 0; i < H.nkeep; i++) fcntl(H.keep[i], F_SETFD, FD_CLOEXEC);
  if (H.logfd >= 0) fcntl(H.logfd, F_SETFD, FD_CLOEXEC);
  int *fds[] = { &H.out, &H.err, &H.master, &H.in, &H.listen };
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) if (*fds[i] >= 0) set_nonblock_cloexec(*fds[i]);
  for (int i = 0; i < npre; i++) add_client(pre_clients[i], pre_hello[i], 1);
  int out = H.out, err = H.err, master_out = H.master;
  long long drain_until = 0, flush_until = 0;
  int done = 0;

  /* the helper may have exited before we ran: its SIGCHLD came to the Node process */
  int status;
  pid_t w = pre_exited ? 0 : waitpid(H.child, &status, WNOHANG);
  if (pre_exited) {
    H.exited = 1;
    H.code = pre_code;
    drain_until = now_ms() + DRAIN_MS;
  } else if (w == H.child || (w < 0 && errno == ECHILD)) {
    if (w < 0) fprintf(stderr, "burrow-holder: pid %d is not our child (its exit status is lost)\n", (int)H.child);
    H.exited = 1;
    H.code = w < 0 ? 125 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    drain_until = now_ms() + DRAIN_MS;
  }

  for (;;) {
    /* the command exited and its output is drained (or the time is up): teardown, then EXIT */
    if (H.exited && !H.teardown && ((out < 0 && err < 0 && master_out < 0) || now_ms() >= drain_until)) {
      close_output(&out);
      close_output(&err);
      close_output(&master_out);
      start_teardown();
    }
    if (H.teardown == -1) H.teardown = -2; /* fork failed: go on to EXIT */
    if (H.teardown == -2 && !done) {
      done = 1;
      if (H.listen >= 0) close(H.listen);
      H.listen = -1;
      if (H.sockpath) unlink(H.sockpath);
      unsigned char code[4] = { (unsigned char)((uint32_t)H.code >> 24), (unsigned char)((uint32_t)H.code >> 16), (unsigned char)((uint32_t)H.code >> 8), (unsigned char)H.code };
      for (int i = 0; i < H.nclients; i++) frame(&H.clients[i].out, EXIT_F, code, 4);
      flush_until = now_ms() + FLUSH_MS;
    }
    if (done) {
      for (int i = 0; i < H.nclients; i++) if (q_flush(&H.clients[i].out, H.clients[i].fd) < 0 || !H.clients[i].out.len) drop_client(i--);
      if (!H.nclients || now_ms() >= flush_until) break;
    }

    struct pollfd pfd[8 + MAX_CLIENTS];
    int kind[8 + MAX_CLIENTS];
    int n = 0;
    pfd[n] = (struct pollfd){ .fd = sfd, .events = POLLIN }; kind[n++] = -1;
    if (H.listen >= 0) { pfd[n] = (struct pollfd){ .fd = H.listen, .events = POLLIN }; kind[n++] = -2; }
    if (out >= 0) { pfd[n] = (struct pollfd){ .fd = out, .events = POLLIN }; kind[n++] = -3; }
    if (err >= 0) { pfd[n] = (struct pollfd){ .fd = err, .events = POLLIN }; kind[n++] = -4; }
    if (master_out >= 0) { pfd[n] = (struct pollfd){ .fd = master_out, .events = POLLIN }; kind[n++] = -5; }
    int infd = input_fd();
    if (infd >= 0 && H.inq.len) { pfd[n] = (struct pollfd){ .fd = infd, .events = POLLOUT }; kind[n++] = -6; }
    for (int i = 0; i < H.nclients; i++) {
      pfd[n] = (struct pollfd){ .fd = H.clients[i].fd, .events = (short)(POLLIN | (H.clients[i].out.len ? POLLOUT : 0)) };
      kind[n++] = i;
    }
    int timeout = -1;
    long long deadline = done ? flush_until : (H.exited && !H.teardown ? drain_until : 0);
    if (deadline) timeout = (int)(deadline > now_ms() ? deadline - now_ms() : 0);
    if (poll(pfd, (nfds_t)n, timeout) < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    for (int k = 0; k < n; k++) {
      if (!pfd[k].revents) continue;
      switch (kind[k]) {
        case -1: {
          struct signalfd_siginfo si;
          while (read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo != SIGCHLD) {
              if (!H.exited) kill(H.child, (int)si.ssi_signo);
              continue;
            }
            pid_t p;
            while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
              if (p == H.child && !H.exited) {
                H.exited = 1;
                H.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                drain_until = now_ms() + DRAIN_MS;
              } else if (p == H.teardown) {
                if (!WIFEXITED(status) || WEXITSTATUS(status)) fprintf(stderr, "burrow-holder: the teardown of the container exited %d; \"burrow system gc\" retries what is left\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
                H.teardown = -2;
              }
            }
          }
          break;
        }
        case -2: {
          int c = accept4(H.listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (c >= 0) add_client(c, 0, 0);
          break;
        }
        case -3: if (on_output(out, 1) < 0) close_output(&out); break;
        case -4: if (on_output(err, 0) < 0) close_output(&err); break;
        case -5: if (on_output(master_out, 1) < 0) close_output(&master_out); break;
        case -6:
          if (q_flush(&H.inq, infd) < 0) {
            q_free(&H.inq); /* the command closed its stdin */
            if (!H.tty) { close(H.in); H.in = -1; }
          }
          break;
        default: {
          struct client *c = &H.clients[kind[k]];
          if (c->dead) break;
          int ok = 1;
          if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) ok = on_client_readable(c);
          if (ok && (pfd[k].revents & POLLOUT)) ok = q_flush(&c->out, c->fd) == 0;
          if (!ok) c->dead = 1;
        }
      }
    }
    drop_dead();
    if (H.in_eof && !H.inq.len && H.in >= 0) {
      close(H.in);
      H.in = -1;
    }
  }
  for (int i = 0; i < H.nkeep; i++) close(H.keep[i]);
  return 0;
}

/* fcntl(F_DUPFD_CLOEXEC) at or above `min`, the original closed. */
static int move_up(int fd, int min) {
  int to = fcntl(fd, F_DUPFD_CLOEXEC, min);
  if (to < 0) die("cannot move fd %d above %d: %s", fd, min, strerror(errno));
  close(fd);
  return to;
}

#define MAX_MOVED (MAX_KEEP + 16 + 2 * MAX_CLIENTS)

static int spawn_main(int argc, char **argv) {
  if (argc < 6 || strcmp(argv[4], "--") != 0) die("usage: burrow-holder --spawn CTLFD LOGFD -- HELPER [ARGS...]");
  int ctl = parse_fd(argv[2]);
  int logfd = parse_fd(argv[3]);
  sigset_t mask;
  sigemptyset(&mask);
  int relayed[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
  for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++) sigaddset(&mask, relayed[i]);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_SETMASK, &mask, NULL); /* before the fork: no SIGCHLD or relayed signal is lost */
  signal(SIGPIPE, SIG_IGN);
  pid_t helper = fork();
  if (helper < 0) die("fork: %s", strerror(errno));
  if (helper == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    close(ctl);
    close(logfd);
    execv(argv[5], argv + 5);
    fprintf(stderr, "burrow-holder: cannot run %s: %s\n", argv[5], strerror(errno));
    _exit(127);
  }
  /* ours: CTL, the log as stderr, /dev/null as stdin and stdout; the helper's fds are its own */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) die("/dev/null: %s", strerror(errno));
  ctl = move_up(ctl, 3);
  logfd = move_up(logfd, 3);
  null = move_up(null, 3);
  dup2(null, 0);
  dup2(null, 1);
  dup2(logfd, 2);
  int pre[3] = { ctl, logfd, null };
  close_strays(pre, 3);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd: %s", strerror(errno));

  static int got[MAX_MOVED], target[MAX_MOVED];
  int nmoved = 0;
  char *hold = NULL;
  size_t hold_len = 0;
  static char data[1 << 16];
  while (!hold) {
    struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN }, { .fd = ctl, .events = POLLIN } };
    /* once the helper has ended, only what the CLI has sent already is read: a HOLD on its way is
     * kept (the teardown must run), and without one the helper's status is the CLI's to see */
    if (pre_exited) {
      struct pollfd c = { .fd = ctl, .events = POLLIN };
      if (poll(&c, 1, 0) <= 0 || !(c.revents & POLLIN)) return pre_code;
    }
    if (poll(pfd, 2, pre_exited ? 0 : -1) < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    if (pfd[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
          kill(helper, (int)si.ssi_signo);
          continue;
        }
        int status;
        if (!pre_exited && waitpid(helper, &status, WNOHANG) == helper) {
          pre_exited = 1;
          pre_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
      }
    }
    if (!pfd[1].revents) continue;
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * 253)]; } cbuf;
    struct iovec iov = { data, sizeof data - 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof cbuf.buf };
    ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
      /* the CLI went away (or sent what we cannot read) before the hand-over: nothing holds the container */
      if (n != 0) fprintf(stderr, "burrow-holder: a bad hand-over message%s\n", n < 0 ? "" : " (truncated)");
      if (pre_exited) return pre_code;
      kill(helper, SIGKILL);
      while (waitpid(helper, NULL, 0) < 0 && errno == EINTR) {}
      return 125;
    }
    data[n] = '\0';
    int fds[253];
    int nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      if (nfds + k > 253) die("too many fds in one message");
      memcpy(fds + nfds, CMSG_DATA(c), sizeof(int) * (size_t)k);
      nfds += k;
    }
    if (!strncmp(data, "FDS ", 4)) {
      char *p = data + 4;
      for (int i = 0; i < nfds; i++) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 3 || t > 1 << 20 || nmoved == MAX_MOVED) die("a bad FDS message: \"%.60s\"", data);
        got[nmoved] = fds[i];
        target[nmoved++] = (int)t;
        p = end;
      }
    } else if (n >= 4 && !memcmp(data, "ENV", 4)) {
      /* NUL-separated NAME=VALUE entries, each ended by a NUL */
      if (data[n - 1] != '\0') die("a bad ENV message (no final NUL)");
      int count = 0;
      for (ssize_t i = 4; i < n; i++) if (data[i] == '\0') count++;
      teardown_env = calloc((size_t)count + 1, sizeof *teardown_env);
      if (!teardown_env) die("out of memory");
      int k = 0;
      for (char *p = data + 4; p < data + n; p += strlen(p) + 1) if (!(teardown_env[k++] = strdup(p))) die("out of memory");
      for (int i = 0; i < nfds; i++) close(fds[i]);
    } else if (n > 5 && !memcmp(data, "HOLD", 5)) {
      for (int i = 0; i < nfds; i++) close(fds[i]);
      hold = data + 5;
      hold_len = (size_t)n - 5;
    } else die("a bad hand-over message: \"%.40s\"", data);
  }
  /* every fd of ours above every target, then each received fd onto its target */
  int top = 3;
  for (int i = 0; i < nmoved; i++) if (target[i] >= top) top = target[i] + 1;
  for (int i = 0; i < nmoved; i++) got[i] = move_up(got[i], top);
  close(ctl);
  close(sfd);
  close(logfd);
  close(null);
  for (int i = 0; i < nmoved; i++) {
    if (dup2(got[i], target[i]) < 0) die("dup2 onto %d: %s", target[i], strerror(errno));
    close(got[i]);
  }
  /* the hold arguments, NUL-separated (the last one ends the message), after -p HELPER */
  if (hold[hold_len - 1] != '\0') die("a bad HOLD message (no final NUL)");
  int hargc = 3;
  for (size_t i = 0; i < hold_len; i++) if (hold[i] == '\0') hargc++;
  char **hargv = calloc((size_t)hargc + 1, sizeof *hargv);
  if (!hargv) die("out of memory");
  static char pidarg[16];
  snprintf(pidarg, sizeof pidarg, "%d", (int)helper);
  hargv[0] = argv[0];
  hargv[1] = "-p";
  hargv[2] = pidarg;
  int k = 3;
  for (char *p = hold; p < hold + hold_len; p += strlen(p) + 1) hargv[k++] = p;
  hargv[k] = NULL;
  optind = 1;
  return hold_main(k, hargv);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--spawn")) return spawn_main(argc, argv);
  return hold_main(argc, argv);
}
