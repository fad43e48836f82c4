/*
 * burrow-cni: the native launcher of one of burrow's CNI plugins, as `burrow cni install` writes it.
 *
 * Theory of operation
 * -------------------
 * A CNI runtime (libcni, containerd, kubelet, burrow's own) execs the plugin per call: stdin holds
 * the network config, CNI_* the call, stdout gets the result or the spec's error JSON, and the exit
 * code says which. Starting Node for each call costs ~40 ms before any work; this program costs
 * ~1 ms. It hands the call to `burrow cni serve` (plugins/serve.ts), the same plugin code resident
 * in one process, and prints what the service answers. When there is no service, or the service
 * will not serve this caller (another install, network namespace, euid or umask: the outcome could
 * differ), it execs the cold path itself: Node with bin/load.cjs and the plugin's bundle, as the
 * script launchers do. Either way the caller sees the same bytes and the same exit code.
 *
 * The wire format is net/cni/serve_wire.ts's (one request, one response per connection).
 *
 * What this binary runs is named in a trailer that install appends to its copy (the ELF loader
 * ignores bytes past the segments): text lines "key=value" (name, root, node, load, bundle, build,
 * socket), then the footer "BCNI-TRAILER %08x\n" with the text's length. A relative root, node,
 * load or bundle is taken from this file's own directory (the real one, symlinks resolved), so an
 * install dir that carries its runtime (DIR/.burrow) can move. The service is told the build ID,
 * or the root when the trailer names none. The socket can be overridden per call by
 * BURROW_CNI_SOCKET ("off": always the cold path).
 *
 * The service dying mid-call (the connection ends before a whole response) falls back to the cold
 * path. A DEL, CHECK, STATUS, GC or VERSION simply runs again there (each is idempotent). An ADD may
 * have been half done by the service: the cold path first runs DEL for the same attachment (output
 * discarded; DEL removes whatever exists and tolerates what does not), then the ADD, so nothing the
 * dead service made is left behind and the result is the cold ADD's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int g_argc;
static char **g_argv;
static char g_self[4096];

#define MAX_REQUEST (16u << 20)
#define MAX_RESPONSE (64u << 20)
#define FOOTER_LEN 22 /* "BCNI-TRAILER " + 8 hex digits + "\n" */
#define MAX_TRAILER 8192

struct conf {
  char *name, *root, *node, *load, *bundle, *build, *socket;
};

struct buf {
  uint8_t *p;
  size_t len, cap;
};

/* An error before the plugin could run: the spec's error JSON on stdout, and a line on stderr. */
static void fail(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("{\n    \"code\": 999,\n    \"msg\": \"burrow-cni: ");
  for (const char *c = msg; *c; c++) {
    if (*c == '"' || *c == '\\') putchar('\\');
    if ((unsigned char)*c >= 0x20) putchar(*c);
  }
  printf("\"\n}\n");
  fflush(stdout);
  fprintf(stderr, "burrow-cni: %s\n", msg);
  exit(1);
}

static void put(struct buf *b, const void *p, size_t n) {
  if (!n) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *q = realloc(b->p, cap);
    if (!q) fail("out of memory");
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void put32(struct buf *b, uint32_t v) {
  uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
  put(b, x, 4);
}

static void put_str(struct buf *b, const void *p, size_t n) {
  put32(b, (uint32_t)n);
  put(b, p, n);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A path from the trailer: absolute as it is, relative from the directory this file is in. */
static char *beside_self(char *v) {
  if (v[0] == '/') return v;
  const char *slash = strrchr(g_self, '/');
  size_t dir = slash ? (size_t)(slash - g_self) : 0;
  size_t n = dir + 1 + strlen(v) + 1;
  char *p = malloc(n);
  if (!p) fail("out of memory");
  snprintf(p, n, "%.*s/%s", (int)dir, g_self, v);
  return p;
}

/* The trailer that install appended to this copy: what to run, and where the service listens. */
static void read_trailer(struct conf *c) {
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) fail("cannot read /proc/self/exe: %s", strerror(errno));
  size_t n = st.st_size < MAX_TRAILER ? (size_t)st.st_size : MAX_TRAILER;
  char *t = malloc(n + 1);
  if (!t || pread(fd, t, n, st.st_size - n) != (ssize_t)n) fail("cannot read its own trailer: %s", strerror(errno));
  close(fd);
  t[n] = 0;
  unsigned len = 0;
  if (n < FOOTER_LEN || strncmp(t + n - FOOTER_LEN, "BCNI-TRAILER ", 13) || sscanf(t + n - FOOTER_LEN + 13, "%8x", &len) != 1 || len > n - FOOTER_LEN) {
    fail("this copy has no trailer naming its plugin: install it with \"burrow cni install --dir DIR\"");
  }
  char *text = t + n - FOOTER_LEN - len;
  t[n - FOOTER_LEN] = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *eq = strchr(line, '=');
    if (!eq || line[0] == '#') continue;
    *eq = 0;
    char *v = eq + 1;
    if (!strcmp(line, "name")) c->name = v;
    else if (!strcmp(line, "root")) c->root = v;
    else if (!strcmp(line, "node")) c->node = v;
    else if (!strcmp(line, "load")) c->load = v;
    else if (!strcmp(line, "bundle")) c->bundle = v;
    else if (!strcmp(line, "build")) c->build = v;
    else if (!strcmp(line, "socket")) c->socket = v;
  }
  if (!c->name || !c->root || !c->node || !c->load || !c->bundle) fail("its trailer lacks name, root, node, load or bundle: install it again");
  c->root = beside_self(c->root);
  c->node = beside_self(c->node);
  c->load = beside_self(c->load);
  c->bundle = beside_self(c->bundle);
}

static int read_all(int fd, struct buf *b, size_t max) {
  uint8_t chunk[65536];
  for (;;) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return 0;
    if (b->len + (size_t)r > max) {
      errno = EFBIG;
      return -1;
    }
    put(b, chunk, (size_t)r);
  }
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK) w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/*
 * The cold path: Node runs the plugin's bundle with stdin as it came (replayed from a memfd once
 * read) and CNI_COMMAND replaced when `command` is given. NODE_EXTRA_CA_CERTS is dropped, as in
 * the script launchers: parsing a CA bundle costs ~55 ms per start and plugins make no TLS calls.
 * Never returns.
 */
static void exec_cold(const struct conf *c, const struct buf *in, int have_in, const char *command) {
  if (have_in) {
    int m = memfd_create("cni-stdin", 0);
    if (m < 0 || write_all(m, in->p, in->len) < 0 || lseek(m, 0, SEEK_SET) < 0 || dup2(m, 0) < 0) fail("cannot replay stdin to the plugin: %s", strerror(errno));
    if (m != 0) close(m);
  }
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof *env);
  size_t k = 0;
  static char cmd[64];
  if (command) {
    snprintf(cmd, sizeof cmd, "CNI_COMMAND=%s", command);
    env[k++] = cmd;
  }
  for (size_t i = 0; i < n; i++) {
    if (!strncmp(environ[i], "NODE_EXTRA_CA_CERTS=", 20)) continue;
    if (command && !strncmp(environ[i], "CNI_COMMAND=", 12)) continue;
    env[k++] = environ[i];
  }
  env[k] = NULL;
  /* node LOAD BUNDLE SELF ARGS...: load.cjs makes process.argv [node, SELF, ARGS...], as a script's */
  char **argv = calloc((size_t)g_argc + 4, sizeof *argv);
  argv[0] = c->node;
  argv[1] = c->load;
  argv[2] = c->bundle;
  argv[3] = g_self;
  for (int i = 1; i < g_argc; i++) argv[3 + i] = g_argv[i];
  execve(c->node, argv, env);
  fail("cannot start the %s plugin: exec %s: %s (installed from %s: run \"burrow cni install\" again)", c->name, c->node, strerror(errno), c->root);
}

/* After the service died mid-ADD: DEL of the same attachment through the cold path, output dropped. */
static void cold_del(const struct conf *c, const struct buf *in) {
  pid_t pid = fork();
  if (pid < 0) return;
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    exec_cold(c, in, 1, "DEL");
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
}

/*
 * Hands the call to the service. Returns -1 when there is none (nothing sent), 1 when it declined
 * this caller, 2 when it died mid-call; on an answer, prints it and exits with its code.
 */
static int call_service(const struct conf *c, const char *path, const struct buf *in) {
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sa.sun_path) return -1;
  strcpy(sa.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
    if (s >= 0) close(s);
    return -1;
  }
  struct stat ns;
  if (stat("/proc/self/ns/net", &ns) < 0) ns.st_ino = 0;
  mode_t mask = umask(0);
  umask(mask);
  struct buf b = { 0 };
  put(&b, "BCNQ\0\0\0\0", 8);
  put_str(&b, c->name, strlen(c->name));
  const char *who = c->build ? c->build : c->root;
  put_str(&b, who, strlen(who));
  uint64_t ino = ns.st_ino;
  put32(&b, (uint32_t)(ino >> 32));
  put32(&b, (uint32_t)ino);
  put32(&b, geteuid());
  put32(&b, mask);
  size_t n = 0;
  while (environ[n]) n++;
  put32(&b, (uint32_t)n);
  for (size_t i = 0; i < n; i++) put_str(&b, environ[i], strlen(environ[i]));
  put_str(&b, in->p, in->len);
  if (b.len - 8 > MAX_REQUEST) {
    close(s);
    return 1;
  }
  uint32_t body = (uint32_t)(b.len - 8);
  uint8_t len[4] = { body >> 24, body >> 16, body >> 8, body };
  memcpy(b.p + 4, len, 4);
  struct buf r = { 0 };
  int sent = write_all(s, b.p, b.len);
  int got = read_all(s, &r, MAX_RESPONSE);
  close(s);
  free(b.p);
  (void)sent; /* a refused write shows as a short response too */
  if (got < 0 || r.len < 24 || memcmp(r.p, "BCNR", 4) || get32(r.p + 4) != r.len - 8) return 2;
  uint32_t status = get32(r.p + 8), code = get32(r.p + 12), out = get32(r.p + 16);
  if (20 + (size_t)out + 4 > r.len) return 2;
  uint32_t err = get32(r.p + 20 + out);
  if (24 + (size_t)out + err != r.len) return 2;
  if (status != 0) {
    if (getenv("BURROW_CNI_DEBUG")) fprintf(stderr, "burrow-cni: the service declined: %.*s\n", (int)out, r.p + 20);
    return 1;
  }
  if (write_all(1, r.p + 20, out) < 0 || write_all(2, r.p + 24 + out, err) < 0) {
    /* the runtime stopped reading: nothing more can be said */
  }
  exit((int)code);
}

int main(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
  ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
  if (n <= 0) snprintf(g_self, sizeof g_self, "%s", argv[0]);
  else g_self[n] = 0;
  struct conf c = { 0 };
  read_trailer(&c);
  const char *command = getenv("CNI_COMMAND");
  /* Without CNI_COMMAND the plugin prints its banner (or, for dhcp, runs its daemon): cold. */
  if (!command || !*command) exec_cold(&c, NULL, 0, NULL);
  const char *path = getenv("BURROW_CNI_SOCKET");
  if (!path || !*path) path = c.socket;
  struct buf in = { 0 };
  if (read_all(0, &in, MAX_REQUEST) < 0) fail("cannot read the network configuration from stdin: %s", strerror(errno));
  if (!path || !*path || !strcmp(path, "off")) exec_cold(&c, &in, 1, NULL);
  int r = call_service(&c, path, &in);
  if (r == 2 && !strcmp(command, "ADD")) cold_del(&c, &in);
  exec_cold(&c, &in, 1, NULL);
  return 1;
}
