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
 * SIGUSR2 to it, reaps every zombie, and exits with the command's status (like catatonit). The
 * helper forwards the same signals to the child and exits with its status (128+signal if killed).
 *
 * Usage: burrow-ns [-n net,mnt,pid,uts,ipc] -- CMD [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int sync_pipe[2];
static char **target;
static int new_pid_ns;
static pid_t forward_to;

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
  (void)arg;
  close(sync_pipe[1]);
  char go = 0;
  if (read(sync_pipe[0], &go, 1) != 1 || go != 'G') _exit(125);
  close(sync_pipe[0]);
  if (!new_pid_ns) {
    exec_or_die();
  }
  /* pid 1 of the new pid namespace: a minimal init. */
  pid_t cmd = fork();
  if (cmd < 0) _exit(125);
  if (cmd == 0) {
    exec_or_die();
  }
  forward_to = cmd;
  install_forwarding();
  int status = 0, code = 0;
  for (;;) {
    pid_t p = waitpid(-1, &status, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: everyone is reaped */
    }
    if (p == cmd) code = exit_code(status);
  }
  _exit(code);
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
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "-n") && i + 1 < argc) flags |= parse_flags(argv[++i]);
    else if (!strcmp(argv[i], "--")) { i++; break; }
    else break;
  }
  if (i >= argc) {
    fprintf(stderr, "usage: burrow-ns [-n net,mnt,pid,uts,ipc] -- CMD [ARGS...]\n");
    return 2;
  }
  target = &argv[i];
  new_pid_ns = (flags & CLONE_NEWPID) != 0;
  if (pipe2(sync_pipe, O_CLOEXEC) < 0) return 125;
  size_t stack_size = 1 << 20;
  char *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return 125;
  pid_t child = clone(child_main, stack + stack_size, CLONE_NEWUSER | flags | SIGCHLD, NULL);
  if (child < 0) {
    int e = errno;
    fprintf(stderr, "burrow-ns: clone(CLONE_NEWUSER) failed: %s (errno %d)\n", strerror(e), e);
    return e == EPERM || e == ENOSPC || e == EUSERS ? 124 : 125;
  }
  close(sync_pipe[0]);
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
