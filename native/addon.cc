// burrow's N-API addon: the kernel calls that Node lacks.
//
// Theory of operation
// -------------------
// setns(2) moves only the calling thread. Every "in netns" call below runs its
// work on a short-lived std::thread that enters the target network namespace,
// creates the object (socket, TAP, /proc/sys/net file, fresh netns) and exits.
// The fd it returns belongs to the target namespace for its whole life, while
// the main JS thread and libuv's pool never change namespace (the pattern of
// passt's NS_CALL, with a thread instead of a clone child).
//
// Every failure throws a JS Error with stable fields: `syscall`, `errno`
// (positive), `code` ("EEXIST"), and the object (`path`, `ifname`, `netns`).
// fds are created O_CLOEXEC; the caller owns every fd that is returned.

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/filter.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <poll.h>
#include <sys/random.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <sys/wait.h>
extern char** environ;
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "errors.h"

using burrow::ErrnoName;
using burrow::Failure;
using burrow::MakeError;

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

// Runs `work` on a new thread that first enters the network namespace at
// `netns` (when non-empty). `work` returns false and fills `f` on failure.
bool RunInNetns(const std::string& netns, Failure& f, const std::function<bool(Failure&)>& work) {
  bool ok = false;
  std::thread t([&]() {
    if (!netns.empty()) {
      int nsfd = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0) {
        f = {errno, "open", netns};
        return;
      }
      if (setns(nsfd, CLONE_NEWNET) < 0) {
        f = {errno, "setns", netns};
        close(nsfd);
        return;
      }
      close(nsfd);
    }
    ok = work(f);
  });
  t.join();
  return ok;
}

std::string OptString(const Napi::Value& v) {
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

bool RequireArgs(const Napi::CallbackInfo& info, size_t n) {
  if (info.Length() < n) {
    Napi::TypeError::New(info.Env(), "wrong number of arguments").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// socketInNetns(netns, domain, type, protocol) -> fd
Napi::Value SocketInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 4)) return env.Undefined();
  std::string netns = OptString(info[0]);
  int domain = info[1].As<Napi::Number>().Int32Value();
  int type = info[2].As<Napi::Number>().Int32Value();
  int proto = info[3].As<Napi::Number>().Int32Value();
  int fd = -1;
  Failure f;
  bool ok = RunInNetns(netns, f, [&](Failure& fl) {
    fd = socket(domain, type | SOCK_CLOEXEC, proto);
    if (fd < 0) {
      fl = {errno, "socket", ""};
      return false;
    }
    return true;
  });
  if (!ok) {
    MakeError(env, f, netns).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// packetSocket(netns, ifname, udpPort) -> { fd, ifindex, mac }: an AF_PACKET datagram socket on
// `ifname` in `netns`, taking IPv4 packets whose UDP destination port is `udpPort` (a classic
// BPF filter; fragments dropped), non-blocking. A DHCP client needs it: it must send and receive
// before its interface has an address, as the reference's d2g/dhcp4client does.
Napi::Value PacketSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  std::string netns = OptString(info[0]);
  std::string ifname = OptString(info[1]);
  uint32_t port = info[2].As<Napi::Number>().Uint32Value();
  int fd = -1;
  unsigned ifindex = 0;
  unsigned char mac[6] = {0};
  Failure f;
  bool ok = RunInNetns(netns, f, [&](Failure& fl) {
    fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IP));
    if (fd < 0) {
      fl = {errno, "socket(AF_PACKET)", ifname};
      return false;
    }
    struct ifreq idx{};
    snprintf(idx.ifr_name, IFNAMSIZ, "%s", ifname.c_str());
    if (ioctl(fd, SIOCGIFINDEX, &idx) < 0) {
      fl = {errno, "ioctl(SIOCGIFINDEX)", ifname};
      close(fd);
      fd = -1;
      return false;
    }
    ifindex = static_cast<unsigned>(idx.ifr_ifindex);
    struct sock_filter code[] = {
        {0x30, 0, 0, 9},          // ldb [9]: protocol
        {0x15, 0, 6, 17},         // UDP, else drop
        {0x28, 0, 0, 6},          // ldh [6]: flags and fragment offset
        {0x45, 4, 0, 0x1fff},     // a fragment: drop
        {0xb1, 0, 0, 0},          // x = header length
        {0x48, 0, 0, 2},          // ldh [x + 2]: destination port
        {0x15, 0, 1, port},       // the port, else drop
        {0x06, 0, 0, 0x40000},    // accept
        {0x06, 0, 0, 0},          // drop
    };
    struct sock_fprog prog = {static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_IP);
    sll.sll_ifindex = static_cast<int>(ifindex);
    struct ifreq ifr{};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname.c_str());
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) fl = {errno, "setsockopt(SO_ATTACH_FILTER)", ifname};
    else if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) fl = {errno, "bind(AF_PACKET)", ifname};
    else if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) fl = {errno, "ioctl(SIOCGIFHWADDR)", ifname};
    else {
      memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
      return true;
    }
    close(fd);
    fd = -1;
    return false;
  });
  if (!ok) {
    MakeError(env, f, netns, ifname).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("ifindex", Napi::Number::New(env, ifindex));
  out.Set("mac", Napi::Buffer<uint8_t>::Copy(env, mac, 6));
  return out;
}

// packetSend(fd, ifindex, packet) -> bytes: sends an IPv4 packet to the link's broadcast address
// (ff:ff:ff:ff:ff:ff) on a packet socket; -1 when the socket would block.
Napi::Value PacketSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int ifindex = info[1].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> pkt = info[2].As<Napi::Buffer<uint8_t>>();
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_IP);
  sll.sll_ifindex = ifindex;
  sll.sll_halen = 6;
  memset(sll.sll_addr, 0xff, 6);
  ssize_t n;
  do {
    n = sendto(fd, pkt.Data(), pkt.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sll), sizeof sll);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Napi::Number::New(env, -1);
  if (n < 0) {
    Failure f{errno, "sendto(AF_PACKET)", "fd " + std::to_string(fd)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// listenInNetns(netns, family 4|6, "tcp"|"udp", address, port, backlog) -> fd
// The socket is bound (and listening, for TCP) before it leaves the thread.
Napi::Value ListenInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 6)) return env.Undefined();
  std::string netns = OptString(info[0]);
  int family = info[1].As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
  bool tcp = OptString(info[2]) != "udp";
  std::string addr = OptString(info[3]);
  int port = info[4].As<Napi::Number>().Int32Value();
  int backlog = info[5].As<Napi::Number>().Int32Value();
  std::string object = addr + ":" + std::to_string(port);
  int fd = -1;
  Failure f;
  bool ok = RunInNetns(netns, f, [&](Failure& fl) {
    fd = socket(family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      fl = {errno, "socket", object};
      return false;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET6) {
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(port);
      if (inet_pton(AF_INET6, addr.empty() ? "::" : addr.c_str(), &s6->sin6_addr) != 1) {
        fl = {EINVAL, "inet_pton", object};
        close(fd);
        return false;
      }
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      len = sizeof(sockaddr_in6);
    } else {
      auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
      s4->sin_family = AF_INET;
      s4->sin_port = htons(port);
      if (inet_pton(AF_INET, addr.empty() ? "0.0.0.0" : addr.c_str(), &s4->sin_addr) != 1) {
        fl = {EINVAL, "inet_pton", object};
        close(fd);
        return false;
      }
      len = sizeof(sockaddr_in);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      fl = {errno, "bind", object};
      close(fd);
      return false;
    }
    if (tcp && listen(fd, backlog) < 0) {
      fl = {errno, "listen", object};
      close(fd);
      return false;
    }
    return true;
  });
  if (!ok) {
    MakeError(env, f, netns).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// openInNetns(netns, path, flags) -> fd. /proc/sys/net resolves to the
// namespace of the thread that opens it, so sysctls are opened here.
Napi::Value OpenInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  std::string netns = OptString(info[0]);
  std::string path = OptString(info[1]);
  int flags = info[2].As<Napi::Number>().Int32Value();
  int fd = -1;
  Failure f;
  bool ok = RunInNetns(netns, f, [&](Failure& fl) {
    fd = open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) {
      fl = {errno, "open", path};
      return false;
    }
    return true;
  });
  if (!ok) {
    MakeError(env, f, netns).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

bool EnsureSharedNetnsDir(const std::string& dir, Failure& f) {
  if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
    f = {errno, "mkdir", dir};
    return false;
  }
  // Like `ip netns add`: make the directory a shared mount point so that
  // mounts under it propagate to other mount namespaces.
  for (int attempt = 0; attempt < 2; attempt++) {
    if (mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) == 0) return true;
    if (errno != EINVAL || attempt == 1) {
      f = {errno, "mount --make-shared", dir};
      return false;
    }
    if (mount(dir.c_str(), dir.c_str(), "none", MS_BIND | MS_REC, nullptr) < 0) {
      f = {errno, "mount --bind", dir};
      return false;
    }
  }
  return true;
}

// netnsCreate(dir, name) -> path. Creates a persistent named network
// namespace as `ip netns add` does: a fresh netns bind-mounted at dir/name.
Napi::Value NetnsCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  std::string dir = OptString(info[0]);
  std::string name = OptString(info[1]);
  std::string path = dir + "/" + name;
  Failure f;
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    f = {EINVAL, "netns name", name};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!EnsureSharedNetnsDir(dir, f)) {
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) {
    f = {errno, "create", path};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  close(fd);
  bool ok = RunInNetns("", f, [&](Failure& fl) {
    if (unshare(CLONE_NEWNET) < 0) {
      fl = {errno, "unshare(CLONE_NEWNET)", path};
      return false;
    }
    std::string self = "/proc/self/task/" + std::to_string(syscall(SYS_gettid)) + "/ns/net";
    if (mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) < 0) {
      fl = {errno, "mount --bind", path};
      return false;
    }
    return true;
  });
  if (!ok) {
    unlink(path.c_str());
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::String::New(env, path);
}

// netnsRemove(path) -> boolean (false when it did not exist). Tolerates a
// path that is not mounted or already gone, as `ip netns del` should.
Napi::Value NetnsRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 1)) return env.Undefined();
  std::string path = OptString(info[0]);
  Failure f;
  if (umount2(path.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
    f = {errno, "umount", path};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (unlink(path.c_str()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    f = {errno, "unlink", path};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// tapOpen(netns, name, vnetHdr, offloadFlags) -> { fd, name }
// IFF_TAP|IFF_NO_PI (+IFF_VNET_HDR with a 12-byte virtio_net_hdr_v1 and the
// given TUNSETOFFLOAD flags). The device is created in `netns`.
Napi::Value TapOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 4)) return env.Undefined();
  std::string netns = OptString(info[0]);
  std::string name = OptString(info[1]);
  bool vnet = info[2].As<Napi::Boolean>().Value();
  unsigned offloads = info[3].As<Napi::Number>().Uint32Value();
  if (name.size() >= IFNAMSIZ) {
    Failure f{ENAMETOOLONG, "TUNSETIFF", name};
    MakeError(env, f, netns, name).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = -1;
  std::string actual;
  Failure f;
  bool ok = RunInNetns(netns, f, [&](Failure& fl) {
    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      fl = {errno, "open", "/dev/net/tun"};
      return false;
    }
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
    strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      fl = {errno, "ioctl(TUNSETIFF)", name};
      close(fd);
      return false;
    }
    actual = ifr.ifr_name;
    if (vnet) {
      int hdr = 12;  // struct virtio_net_hdr_v1
      if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        fl = {errno, "ioctl(TUNSETVNETHDRSZ)", actual};
        close(fd);
        return false;
      }
      if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
        fl = {errno, "ioctl(TUNSETOFFLOAD)", actual};
        close(fd);
        return false;
      }
    }
    return true;
  });
  if (!ok) {
    MakeError(env, f, netns, name).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, actual));
  return out;
}

// digest(algo, data) -> Buffer: "sha512", "sha256" or "sha1" of a Buffer, through the OpenSSL
// that Node itself links (its symbols resolve against the node binary). A cold plugin that hashes
// a chain name then does not load node:crypto (about 5 ms of Node's own JavaScript per start).
Napi::Value Digest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  std::string algo = info[0].As<Napi::String>();
  const EVP_MD* md = algo == "sha512" ? EVP_sha512() : algo == "sha256" ? EVP_sha256() : algo == "sha1" ? EVP_sha1() : nullptr;
  if (!md || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "digest(algo, data): algo is sha512, sha256 or sha1 and data a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto data = info[1].As<Napi::Buffer<uint8_t>>();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data.Data(), data.Length(), out, &n, md, nullptr) != 1) {
    Napi::Error::New(env, "EVP_Digest failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Buffer<uint8_t>::Copy(env, out, n);
}

// randomFill(buf) -> buf, from getrandom(2) (the kernel's CSPRNG; blocks only before it is seeded).
Napi::Value RandomFill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 1)) return env.Undefined();
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  size_t done = 0;
  while (done < buf.Length()) {
    ssize_t r = getrandom(buf.Data() + done, buf.Length() - done, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      Failure f{errno, "getrandom", ""};
      MakeError(env, f).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    done += (size_t)r;
  }
  return buf;
}

// flockSync(fd, op) -> boolean. op is LOCK_SH|LOCK_EX|LOCK_UN (+LOCK_NB).
// Returns false when LOCK_NB was given and the lock is held elsewhere.
Napi::Value FlockSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].As<Napi::Number>().Int32Value();
  int rc;
  do {
    rc = flock(fd, op);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EWOULDBLOCK && (op & LOCK_NB)) return Napi::Boolean::New(env, false);
    Failure f{errno, "flock", "fd " + std::to_string(fd)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// Blocking flock on libuv's pool, so a contended lock never stalls the loop.
class FlockWorker : public Napi::AsyncWorker {
 public:
  FlockWorker(Napi::Env env, int fd, int op)
      : Napi::AsyncWorker(env), fd_(fd), op_(op), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    int rc;
    do {
      rc = flock(fd_, op_);
    } while (rc < 0 && errno == EINTR);
    err_ = rc < 0 ? errno : 0;
  }
  void OnOK() override {
    if (err_ == 0) {
      deferred_.Resolve(Env().Undefined());
      return;
    }
    Failure f{err_, "flock", "fd " + std::to_string(fd_)};
    deferred_.Reject(MakeError(Env(), f).Value());
  }

 private:
  int fd_;
  int op_;
  int err_ = 0;
  Napi::Promise::Deferred deferred_;
};

Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  auto* w = new FlockWorker(env, info[0].As<Napi::Number>().Int32Value(),
                            info[1].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}


// runProgram(file, args[], input) -> Promise<{ code, stdout, stderr }>: posix_spawn of `file`
// with `input` on its stdin and its stdout and stderr collected, all on libuv's pool, then
// waitpid. A firewall tool run this way needs neither node:child_process nor node:net (about
// 16 ms of module loading in each exec'd plugin). The child starts with an empty signal mask and
// SIGPIPE at its default; it gets this process's environment. code: the exit status, or
// 128 + the signal.
class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, std::string file, std::vector<std::string> args, std::string input)
      : Napi::AsyncWorker(env), file_(std::move(file)), args_(std::move(args)), input_(std::move(input)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0) return fail("pipe2");
    if (pipe2(out, O_CLOEXEC) < 0) { close(in[0]); close(in[1]); return fail("pipe2"); }
    if (pipe2(err, O_CLOEXEC) < 0) { close(in[0]); close(in[1]); close(out[0]); close(out[1]); return fail("pipe2"); }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(file_.c_str()));
    for (auto& a : args_) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid;
    int rc = posix_spawn(&pid, file_.c_str(), &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
      close(in[1]); close(out[0]); close(err[0]);
      errno = rc;
      return fail("posix_spawn");
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    size_t written = 0;
    int wfd = in[1];
    if (input_.empty()) { close(wfd); wfd = -1; }
    int rfd[2] = {out[0], err[0]};
    char buf[65536];
    while (wfd >= 0 || rfd[0] >= 0 || rfd[1] >= 0) {
      pollfd p[3];
      int n = 0;
      int map[3];
      if (wfd >= 0) { p[n] = {wfd, POLLOUT, 0}; map[n++] = 2; }
      for (int i = 0; i < 2; i++) if (rfd[i] >= 0) { p[n] = {rfd[i], POLLIN, 0}; map[n++] = i; }
      if (poll(p, n, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int k = 0; k < n; k++) {
        if (!p[k].revents) continue;
        if (map[k] == 2) {
          ssize_t w = write(wfd, input_.data() + written, input_.size() - written);
          if (w > 0) written += static_cast<size_t>(w);
          if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input_.size()) { close(wfd); wfd = -1; }
        } else {
          ssize_t r = read(rfd[map[k]], buf, sizeof buf);
          if (r > 0) (map[k] == 0 ? stdout_ : stderr_).append(buf, static_cast<size_t>(r));
          else if (r == 0 || (errno != EAGAIN && errno != EINTR)) { close(rfd[map[k]]); rfd[map[k]] = -1; }
        }
      }
    }
    if (wfd >= 0) close(wfd);
    for (int fd : rfd) if (fd >= 0) close(fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) return fail("waitpid");
    }
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void OnOK() override {
    if (err_) {
      deferred_.Reject(MakeError(Env(), Failure{err_, syscall_, file_}).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(Env());
    o.Set("code", Napi::Number::New(Env(), code_));
    o.Set("stdout", Napi::Buffer<char>::Copy(Env(), stdout_.data(), stdout_.size()));
    o.Set("stderr", Napi::Buffer<char>::Copy(Env(), stderr_.data(), stderr_.size()));
    deferred_.Resolve(o);
  }

 private:
  void fail(const char* syscall) {
    err_ = errno;
    syscall_ = syscall;
  }
  std::string file_;
  std::vector<std::string> args_;
  std::string input_;
  std::string stdout_, stderr_;
  int code_ = 0;
  int err_ = 0;
  const char* syscall_ = "";
  Napi::Promise::Deferred deferred_;
};

Napi::Value RunProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  std::vector<std::string> args;
  auto a = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) args.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  auto in = info[2].As<Napi::Buffer<char>>();
  auto* w = new RunWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(args), std::string(in.Data(), in.Length()));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// sendFds(sock, fds[], data) -> bytes sent. SCM_RIGHTS over a unix socket.
Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  int sock = info[0].As<Napi::Number>().Int32Value();
  Napi::Array arr = info[1].As<Napi::Array>();
  Napi::Buffer<uint8_t> data = info[2].As<Napi::Buffer<uint8_t>>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) fds.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  uint8_t dummy = 0;
  iovec iov{data.Length() ? data.Data() : &dummy, data.Length() ? data.Length() : 1};
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())), 0);
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = cbuf.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    Failure f{errno, "sendmsg", "fd " + std::to_string(sock)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvFds(sock, maxFds, maxBytes[, dontWait]) -> { data: Buffer, fds: number[] } | null.
// Received fds are O_CLOEXEC; a truncated control message is an error
// (its fds would otherwise leak unseen). With dontWait (MSG_DONTWAIT), null
// when nothing is waiting, so an event-loop reader never blocks.
Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  int sock = info[0].As<Napi::Number>().Int32Value();
  uint32_t maxFds = info[1].As<Napi::Number>().Uint32Value();
  uint32_t maxBytes = info[2].As<Napi::Number>().Uint32Value();
  bool dontWait = info.Length() > 3 && info[3].ToBoolean().Value();
  if (maxFds == 0) maxFds = 1;
  if (maxBytes == 0) maxBytes = 1;
  std::vector<uint8_t> buf(maxBytes);
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * maxFds), 0);
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf.data();
  msg.msg_controllen = cbuf.size();
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (dontWait ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && dontWait && (errno == EAGAIN || errno == EWOULDBLOCK)) return env.Null();
  if (n < 0) {
    Failure f{errno, "recvmsg", "fd " + std::to_string(sock)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array fds = Napi::Array::New(env);
  uint32_t k = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < count; i++) fds.Set(k++, Napi::Number::New(env, p[i]));
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (uint32_t i = 0; i < k; i++) close(fds.Get(i).As<Napi::Number>().Int32Value());
    Failure f{EMSGSIZE, "recvmsg(SCM_RIGHTS truncated)", "fd " + std::to_string(sock)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n)));
  out.Set("fds", fds);
  return out;
}

// ---- Unprivileged ICMP echo ("ping") sockets --------------------------------
//
// pingSocket(family) -> fd: socket(AF_INET[6], SOCK_DGRAM, IPPROTO_ICMP[V6]),
// non-blocking. The kernel allows it only when the caller's gid is inside
// net.ipv4.ping_group_range of its netns; otherwise EACCES. The kernel owns the
// echo identifier (it is the socket's "port") and checksums both ways.

Napi::Value PingSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 1)) return env.Undefined();
  bool v6 = info[0].As<Napi::Number>().Int32Value() == 6;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, v6 ? static_cast<int>(IPPROTO_ICMPV6) : static_cast<int>(IPPROTO_ICMP));
  if (fd < 0) {
    Failure f{errno, "socket(IPPROTO_ICMP)", v6 ? "IPv6" : "IPv4"};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

bool ParseAddr(const std::string& text, sockaddr_storage& ss, socklen_t& len) {
  memset(&ss, 0, sizeof ss);
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, text.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    len = sizeof *a4;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    len = sizeof *a6;
    return true;
  }
  return false;
}

// sendTo(fd, buf, address) -> bytes, or -1 when it would block.
Napi::Value SendTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
  std::string addr = info[2].As<Napi::String>().Utf8Value();
  sockaddr_storage ss;
  socklen_t len;
  if (!ParseAddr(addr, ss, len)) {
    Napi::TypeError::New(env, "invalid address " + addr).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ssize_t n;
  do n = sendto(fd, b.Data(), b.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    Failure f{errno, "sendto", addr};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// netlinkRequest(fd, request) -> Buffer: sends one netlink request (a whole nlmsghdr message) to
// the kernel on the AF_NETLINK socket `fd` and returns every reply message with its sequence
// number, up to and including the NLMSG_DONE of a dump or the NLMSG_ERROR (an ack or an errno)
// of any other request: the caller sets NLM_F_ACK on non-dump requests. rtnetlink answers within
// the send, so this blocks only for the copy; a kernel silent for 10 s is ETIMEDOUT.
Napi::Value NetlinkRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto req = info[1].As<Napi::Buffer<uint8_t>>();
  if (req.Length() < sizeof(nlmsghdr)) {
    MakeError(env, Failure{EINVAL, "netlink request", "shorter than a header"}).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  nlmsghdr head;
  memcpy(&head, req.Data(), sizeof head);
  bool dump = (head.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t n;
  do {
    n = sendto(fd, req.Data(), req.Length(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    MakeError(env, Failure{errno, "sendto", "netlink"}).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 16);
  for (bool done = false; !done;) {
    pollfd p{fd, POLLIN, 0};
    int pr;
    do {
      pr = poll(&p, 1, 10000);
    } while (pr < 0 && errno == EINTR);
    if (pr <= 0) {
      MakeError(env, Failure{pr == 0 ? ETIMEDOUT : errno, "recv", "netlink"}).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // size the next datagram first: a dump's can exceed any fixed buffer
    ssize_t want = recv(fd, nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (want > static_cast<ssize_t>(buf.size())) buf.resize(static_cast<size_t>(want));
    ssize_t r;
    do {
      r = recv(fd, buf.data(), buf.size(), 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      MakeError(env, Failure{errno, "recv", "netlink"}).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t off = 0;
    while (off + sizeof(nlmsghdr) <= static_cast<size_t>(r)) {
      nlmsghdr h;
      memcpy(&h, buf.data() + off, sizeof h);
      if (h.nlmsg_len < sizeof(nlmsghdr) || off + h.nlmsg_len > static_cast<size_t>(r)) break;
      if (h.nlmsg_seq == head.nlmsg_seq) {
        out.insert(out.end(), buf.begin() + off, buf.begin() + off + h.nlmsg_len);
        if (h.nlmsg_type == NLMSG_ERROR || h.nlmsg_type == NLMSG_DONE) done = true;
        else if (!dump && !(head.nlmsg_flags & NLM_F_ACK)) done = true;
      }
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
  }
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}


// recvFrom(fd, buf) -> { length, address } or null when nothing is waiting.
Napi::Value RecvFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  ssize_t n;
  do n = recvfrom(fd, b.Data(), b.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), &len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    Failure f{errno, "recvfrom", "fd " + std::to_string(fd)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  char text[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
  else if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, text, sizeof text);
  Napi::Object o = Napi::Object::New(env);
  o.Set("length", Napi::Number::New(env, static_cast<double>(n)));
  o.Set("address", Napi::String::New(env, text));
  return o;
}

// socketpair(AF_UNIX, SOCK_STREAM|SOCK_SEQPACKET) -> [fd, fd]
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : SOCK_STREAM;
  int sv[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) {
    Failure f{errno, "socketpair", ""};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, sv[0]));
  out.Set(1u, Napi::Number::New(env, sv[1]));
  return out;
}

// ---- Frame I/O on a TAP fd: the userspace stack's hot path --------------------
//
// watchReadable(fd, cb) polls the fd on libuv's loop (level-triggered) and calls
// cb() while frames are waiting; cb drains them with readFrames, which reads as
// many frames as fit into one caller-owned buffer in one call (no per-frame JS
// round trip, no allocation). writeFrame gathers the parts of one frame with
// writev, so a header built in JS and a payload slice go out without a copy.

struct Watch {
  uv_poll_t poll;
  Napi::FunctionReference cb;
  Napi::AsyncContext* ctx;
};

std::map<int, Watch*> g_watches;

void OnReadable(uv_poll_t* handle, int status, int events) {
  (void)events;
  Watch* w = static_cast<Watch*>(handle->data);
  Napi::Env env = w->cb.Env();
  Napi::HandleScope scope(env);
  w->cb.MakeCallback(env.Global(), {Napi::Number::New(env, status)}, *w->ctx);
}

// watchReadable(fd, cb): cb(status) runs while fd is readable; unwatch(fd) stops it.
Napi::Value WatchReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (g_watches.count(fd)) {
    Napi::Error::New(env, "fd " + std::to_string(fd) + " is already watched").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  Watch* w = new Watch();
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc == 0) rc = uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  if (rc != 0) {
    delete w;
    Failure f{-rc, "uv_poll_start", "fd " + std::to_string(fd)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  w->poll.data = w;
  w->cb = Napi::Persistent(info[1].As<Napi::Function>());
  w->ctx = new Napi::AsyncContext(env, "burrow:tap");
  g_watches[fd] = w;
  return env.Undefined();
}

Napi::Value Unwatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 1)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto it = g_watches.find(fd);
  if (it == g_watches.end()) return Napi::Boolean::New(env, false);
  Watch* w = it->second;
  g_watches.erase(it);
  uv_poll_stop(&w->poll);
  w->cb.Reset();
  delete w->ctx;
  w->ctx = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { delete static_cast<Watch*>(h->data); });
  return Napi::Boolean::New(env, true);
}

// readFrames(fd, buf, lens: Uint32Array, frameMax) -> count. Frame i starts where
// frame i-1 ended; reading stops at EAGAIN, when lens is full, or when less than
// frameMax bytes of buf remain. A zero-length read (device gone) ends it too.
Napi::Value ReadFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 4)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Uint32Array lens = info[2].As<Napi::Uint32Array>();
  size_t frameMax = info[3].As<Napi::Number>().Uint32Value();
  size_t off = 0, count = 0;
  while (count < lens.ElementLength() && buf.Length() - off >= frameMax) {
    ssize_t n = read(fd, buf.Data() + off, frameMax);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (count) break;  // report the error on the next call
      Failure f{errno, "read", "fd " + std::to_string(fd)};
      MakeError(env, f).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (n == 0) break;
    lens[count++] = static_cast<uint32_t>(n);
    off += static_cast<size_t>(n);
  }
  return Napi::Number::New(env, static_cast<double>(count));
}

// writeFrame(fd, parts: Buffer[]) -> bytes written, or -1 when the device
// would block (the frame is dropped, as a full NIC queue drops).
Napi::Value WriteFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 2)) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Array parts = info[1].As<Napi::Array>();
  iovec iov[16];
  uint32_t n = parts.Length();
  if (n > 16) n = 16;
  for (uint32_t i = 0; i < n; i++) {
    Napi::Buffer<uint8_t> b = parts.Get(i).As<Napi::Buffer<uint8_t>>();
    iov[i].iov_base = b.Data();
    iov[i].iov_len = b.Length();
  }
  ssize_t w;
  do {
    w = writev(fd, iov, static_cast<int>(n));
  } while (w < 0 && errno == EINTR);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    Failure f{errno, "writev", "fd " + std::to_string(fd)};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(w));
}

// ---- Spliced relay: kernel socket to kernel socket ----------------------------
//
// spliceRelay(fdA, fdB, done) takes ownership of two connected stream sockets and
// moves bytes both ways on a thread of its own with splice(2) through a pipe per
// direction, so payload never enters user space (passt's tcp_splice.c path). An
// EOF on one side becomes shutdown(SHUT_WR) on the other once its pipe is empty;
// an error on either side resets both (SO_LINGER 0). done(aToB, bToA, error) runs
// on the JS thread after both fds are closed.

struct Relay {
  int fd[2];
  int pipe[2][2];
  size_t inPipe[2] = {0, 0};
  bool eof[2] = {false, false};   // read side saw EOF
  bool shut[2] = {false, false};  // write side shut down
  uint64_t moved[2] = {0, 0};
  int err = 0;
};

void RelayLoop(Relay* r) {
  for (int d = 0; d < 2; d++) {
    if (pipe2(r->pipe[d], O_NONBLOCK | O_CLOEXEC) < 0) {
      r->err = errno;
      return;
    }
    fcntl(r->pipe[d][0], F_SETPIPE_SZ, 1 << 20);
  }
  for (int i = 0; i < 2; i++) fcntl(r->fd[i], F_SETFL, fcntl(r->fd[i], F_GETFL) | O_NONBLOCK);
  while (!(r->shut[0] && r->shut[1])) {
    pollfd p[2];
    for (int i = 0; i < 2; i++) {
      p[i].fd = r->fd[i];
      p[i].events = 0;
      p[i].revents = 0;
      // direction d moves fd[d] -> fd[1-d]
      if (!r->eof[i] && r->inPipe[i] < (1u << 20)) p[i].events |= POLLIN;
      if (r->inPipe[1 - i] > 0 && !r->shut[1 - i]) p[i].events |= POLLOUT;
      if (!p[i].events) p[i].fd = -1;  // nothing to wait for here (a HUP would spin)
    }
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      r->err = errno;
      return;
    }
    for (int i = 0; i < 2; i++) {
      if (p[i].revents & (POLLERR | POLLNVAL)) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(r->fd[i], SOL_SOCKET, SO_ERROR, &e, &l);
        r->err = e ? e : EIO;
        return;
      }
    }
    for (int d = 0; d < 2; d++) {
      int src = r->fd[d], dst = r->fd[1 - d];
      if (!r->eof[d]) {
        ssize_t n = splice(src, nullptr, r->pipe[d][1], nullptr, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) r->inPipe[d] += static_cast<size_t>(n);
        else if (n == 0) r->eof[d] = true;
        else if (errno != EAGAIN && errno != EINTR) {
          r->err = errno;
          return;
        }
      }
      while (r->inPipe[d] > 0) {
        ssize_t n = splice(r->pipe[d][0], nullptr, dst, nullptr, r->inPipe[d], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          r->inPipe[d] -= static_cast<size_t>(n);
          r->moved[d] += static_cast<uint64_t>(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          break;
        } else {
          r->err = n < 0 ? errno : EPIPE;
          return;
        }
      }
      if (r->eof[d] && r->inPipe[d] == 0 && !r->shut[1 - d]) {
        shutdown(dst, SHUT_WR);
        r->shut[1 - d] = true;
      }
    }
  }
}

struct RelayDone {
  double a, b;
  int err;
};

Napi::Value SpliceRelay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  int a = info[0].As<Napi::Number>().Int32Value();
  int b = info[1].As<Napi::Number>().Int32Value();
  auto tsfn = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "burrow:splice", 0, 1);
  std::thread([a, b, tsfn]() mutable {
    Relay r;
    r.fd[0] = a;
    r.fd[1] = b;
    r.pipe[0][0] = r.pipe[0][1] = r.pipe[1][0] = r.pipe[1][1] = -1;
    RelayLoop(&r);
    if (r.err) {
      linger lg{1, 0};  // reset both peers, as a crashed middlebox would
      setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    for (int d = 0; d < 2; d++)
      for (int k = 0; k < 2; k++)
        if (r.pipe[d][k] >= 0) close(r.pipe[d][k]);
    close(a);
    close(b);
    auto* done = new RelayDone{static_cast<double>(r.moved[0]), static_cast<double>(r.moved[1]), r.err};
    tsfn.BlockingCall(done, [](Napi::Env env, Napi::Function cb, RelayDone* d) {
      cb.Call({Napi::Number::New(env, d->a), Napi::Number::New(env, d->b),
               d->err ? Napi::String::New(env, ErrnoName(d->err)) : env.Null()});
      delete d;
    });
    tsfn.Release();
  }).detach();
  return env.Undefined();
}

// dupFd(fd) -> a new O_CLOEXEC fd for the same open file.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 1)) return env.Undefined();
  int fd = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) {
    Failure f{errno, "fcntl(F_DUPFD_CLOEXEC)", ""};
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// execve(file, argv, env, keep): replaces the whole process (every thread) with `file`, keeping
// the `keep` fds open across the exec (FD_CLOEXEC cleared). Node has no exec of its own: this is
// how a process re-executes itself into a sandbox (burrow-ns -Z) with the same pid. Returns only
// on failure, by throwing.
Napi::Value Execve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 4)) return env.Undefined();
  std::string file = info[0].As<Napi::String>().Utf8Value();
  auto toStrings = [](Napi::Array a) {
    std::vector<std::string> out;
    for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    return out;
  };
  std::vector<std::string> args = toStrings(info[1].As<Napi::Array>());
  std::vector<std::string> envs = toStrings(info[2].As<Napi::Array>());
  Napi::Array keep = info[3].As<Napi::Array>();
  for (uint32_t i = 0; i < keep.Length(); i++) {
    int fd = keep.Get(i).As<Napi::Number>().Int32Value();
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0) {
      MakeError(env, Failure{errno, "fcntl(F_SETFD)", std::to_string(fd)}).ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  for (auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  execve(file.c_str(), argv.data(), envp.data());
  MakeError(env, Failure{errno, "execve", file}).ThrowAsJavaScriptException();
  return env.Undefined();
}

// seccompSandbox() -> the names it blocks. Installs slirp4netns's --enable-seccomp filter on
// every thread of the process (SECCOMP_FILTER_FLAG_TSYNC, after no_new_privs): the syscalls that
// would let a compromised stack leave its confinement kill the process; everything else is
// allowed. Another architecture (or the x32 ABI) than the addon's is killed too.
Napi::Value SeccompSandbox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct Blocked { int nr; const char* name; };
  static const Blocked blocked[] = {
      {__NR_execve, "execve"}, {__NR_execveat, "execveat"}, {__NR_open_by_handle_at, "open_by_handle_at"},
      {__NR_ptrace, "ptrace"}, {__NR_prctl, "prctl"}, {__NR_process_vm_readv, "process_vm_readv"},
      {__NR_process_vm_writev, "process_vm_writev"}, {__NR_mount, "mount"}, {__NR_name_to_handle_at, "name_to_handle_at"},
      {__NR_setns, "setns"}, {__NR_umount2, "umount2"}, {__NR_unshare, "unshare"},
  };
#if defined(__x86_64__)
  const uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  const uint32_t arch = AUDIT_ARCH_AARCH64;
#else
  MakeError(env, Failure{ENOSYS, "seccomp", "this architecture"}).ThrowAsJavaScriptException();
  return env.Undefined();
#endif
  std::vector<sock_filter> prog;
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0));
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1));
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
  for (const auto& b : blocked) {
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(b.nr), 0, 1));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  }
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    MakeError(env, Failure{errno, "prctl(PR_SET_NO_NEW_PRIVS)", ""}).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  long r = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
  if (r != 0) {
    // r > 0: the id of a thread that could not be synchronised
    MakeError(env, Failure{r > 0 ? ESRCH : errno, "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)", ""}).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array names = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& b : blocked) names.Set(i++, Napi::String::New(env, b.name));
  return names;
}

// setWinsize(fd, rows, cols): ioctl(TIOCSWINSZ) on a terminal (a pty master: the size the
// container's side sees, and SIGWINCH to its foreground process group).
Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RequireArgs(info, 3)) return env.Undefined();
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value());
  ws.ws_col = static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value());
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws) < 0) {
    Failure f{errno, "ioctl(TIOCSWINSZ)", ""};
    MakeError(env, f).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("LOCK_SH", Napi::Number::New(env, static_cast<double>(LOCK_SH)));
  c.Set("LOCK_EX", Napi::Number::New(env, static_cast<double>(LOCK_EX)));
  c.Set("LOCK_UN", Napi::Number::New(env, static_cast<double>(LOCK_UN)));
  c.Set("LOCK_NB", Napi::Number::New(env, static_cast<double>(LOCK_NB)));
  c.Set("CLONE_NEWNET", Napi::Number::New(env, static_cast<double>(CLONE_NEWNET)));
  c.Set("AF_NETLINK", Napi::Number::New(env, static_cast<double>(AF_NETLINK)));
  c.Set("AF_INET", Napi::Number::New(env, static_cast<double>(AF_INET)));
  c.Set("AF_INET6", Napi::Number::New(env, static_cast<double>(AF_INET6)));
  c.Set("AF_UNIX", Napi::Number::New(env, static_cast<double>(AF_UNIX)));
  c.Set("SOCK_STREAM", Napi::Number::New(env, static_cast<double>(SOCK_STREAM)));
  c.Set("SOCK_DGRAM", Napi::Number::New(env, static_cast<double>(SOCK_DGRAM)));
  c.Set("SOCK_RAW", Napi::Number::New(env, static_cast<double>(SOCK_RAW)));
  c.Set("SOCK_SEQPACKET", Napi::Number::New(env, static_cast<double>(SOCK_SEQPACKET)));
  c.Set("TUN_F_CSUM", Napi::Number::New(env, static_cast<double>(TUN_F_CSUM)));
  c.Set("TUN_F_TSO4", Napi::Number::New(env, static_cast<double>(TUN_F_TSO4)));
  c.Set("TUN_F_TSO6", Napi::Number::New(env, static_cast<double>(TUN_F_TSO6)));
  c.Set("TUN_F_TSO_ECN", Napi::Number::New(env, static_cast<double>(TUN_F_TSO_ECN)));
  c.Set("TUN_F_UFO", Napi::Number::New(env, static_cast<double>(TUN_F_UFO)));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("socketInNetns", Napi::Function::New(env, SocketInNetns));
  exports.Set("packetSocket", Napi::Function::New(env, PacketSocket));
  exports.Set("packetSend", Napi::Function::New(env, PacketSend));
  exports.Set("listenInNetns", Napi::Function::New(env, ListenInNetns));
  exports.Set("openInNetns", Napi::Function::New(env, OpenInNetns));
  exports.Set("netnsCreate", Napi::Function::New(env, NetnsCreate));
  exports.Set("netnsRemove", Napi::Function::New(env, NetnsRemove));
  exports.Set("tapOpen", Napi::Function::New(env, TapOpen));
  exports.Set("flockSync", Napi::Function::New(env, FlockSync));
  exports.Set("digest", Napi::Function::New(env, Digest));
  exports.Set("randomFill", Napi::Function::New(env, RandomFill));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("runProgram", Napi::Function::New(env, RunProgram));
  exports.Set("sendFds", Napi::Function::New(env, SendFds));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair));
  exports.Set("watchReadable", Napi::Function::New(env, WatchReadable));
  exports.Set("unwatch", Napi::Function::New(env, Unwatch));
  exports.Set("readFrames", Napi::Function::New(env, ReadFrames));
  exports.Set("writeFrame", Napi::Function::New(env, WriteFrame));
  exports.Set("spliceRelay", Napi::Function::New(env, SpliceRelay));
  exports.Set("dupFd", Napi::Function::New(env, DupFd));
  exports.Set("execve", Napi::Function::New(env, Execve));
  exports.Set("seccompSandbox", Napi::Function::New(env, SeccompSandbox));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize));
  exports.Set("pingSocket", Napi::Function::New(env, PingSocket));
  exports.Set("sendTo", Napi::Function::New(env, SendTo));
  exports.Set("recvFrom", Napi::Function::New(env, RecvFrom));
  exports.Set("netlinkRequest", Napi::Function::New(env, NetlinkRequest));
  exports.Set("constants", Constants(env));
  burrow::InitDnsResponder(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(burrow_native, Init)
