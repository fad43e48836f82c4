// The DNS server's UDP fast path: a thread that owns one gateway's UDP socket, answers repeated
// questions from a cache of the JS server's own answers, and hands everything else to JS.
//
// Theory of operation
// -------------------
// - The thread blocks in recvmmsg(MSG_WAITFORONE) and takes up to BATCH queries per call, so a
//   busy server makes one receive and one sendmmsg per batch rather than per query; an idle one
//   makes exactly one of each per query, as a C server would.
// - Every query is first charged to its source address, in two token buckets (at most
//   MAX_CLIENTS clients; past that all are forgotten at once, which at worst refills an honest
//   client):
//   - the hard limit, `rate` per second with bursts of `burst`: over it, always dropped;
//   - the fair share, `share` per second with bursts of `share`: over it, dropped only while the
//     server is saturated: SATURATED receives in a row returned a full batch, so queries have been
//     queuing in the kernel for a while (a client's burst of a few dozen is not saturation),
//     and only while another client was active in this second or the last: a client alone
//     takes the whole server. A busy client gets all the capacity nobody else wants, and a flooding one cannot
//     starve the others once capacity runs out.
//   Both are counted (rate-limited, shed).
// - The cache key is the source address and the whole query after its id: flags, question
//   (with the client's letter case), and any EDNS record. The JS server's answer is a function
//   of exactly these and of the records, so a hit returns what JS would have built, with the
//   query's id put in. JS decides what may be cached (local answers only, never forwarded or
//   refused ones) and clears the cache whenever the records change. When MAX_ENTRIES is reached
//   the cache is emptied, so a client that sprays unique questions costs bounded memory and
//   only slows itself and others back to the JS path.
// - A miss goes to JS through a thread-safe function whose queue holds at most QUEUE messages;
//   past that the query is dropped and counted (JS is behind: a flood). JS answers with
//   reply(), which sends from this socket and may fill the cache.
// - stop() sets a flag and shuts the socket down for reading, which wakes recvmmsg; the thread
//   closes the socket and calls `onClose` last.
//
// Counters: hits per cache kind (JS passes 0 for an answer, 1 for NXDOMAIN), rate-limited, shed,
// queue-full, oversized (a datagram longer than MAX_QUERY, which no resolver sends).

#include <napi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "errors.h"

namespace {

using burrow::Failure;
using burrow::MakeError;

constexpr int BATCH = 32;
constexpr size_t MAX_QUERY = 4096;
constexpr size_t MAX_CACHED = 4096;  // a larger answer is always built by JS
constexpr size_t MAX_ENTRIES = 16384;
constexpr size_t MAX_CLIENTS = 4096;
constexpr size_t QUEUE = 1024;
constexpr int SATURATED = 4;

struct Bucket {
  double tokens;  // hard limit
  double fair;    // fair share
  double atMs;
  uint64_t epoch;  // the last second it asked in
};

struct Entry {
  std::string response;
  int kind;
};

struct Responder {
  int fd = -1;
  double rate = 0, burst = 0, share = 0;
  std::atomic<bool> stopping{false};
  std::mutex mu;  // guards cache, and fd against the thread's close
  std::unordered_map<std::string, Entry> cache;
  std::unordered_map<std::string, Bucket> buckets;  // the thread's own
  uint64_t epoch = 1;         // seconds since start, and when the current one began
  double epochAtMs = 0;
  int clientsNow = 0, clientsBefore = 0;  // clients seen in this second and the last
  std::atomic<uint64_t> hits[2]{{0}, {0}};
  std::atomic<uint64_t> limited{0}, shed{0}, queueFull{0}, oversized{0};
  Napi::ThreadSafeFunction onMiss;
  Napi::ThreadSafeFunction onClose;
};

struct Miss {
  std::string query;
  std::string address;
  int port;
};

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// The source address's bytes: the rate-limit key and the start of the cache key.
std::string AddrKey(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    return std::string("\x04", 1) + std::string(reinterpret_cast<const char*>(&a->sin_addr), 4);
  }
  auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  return std::string("\x06", 1) + std::string(reinterpret_cast<const char*>(&a->sin6_addr), 16);
}

// `text` and `port` as a sockaddr; false if `text` is not an IP address.
bool ToSockaddr(const std::string& text, int port, sockaddr_storage& ss, socklen_t& len) {
  memset(&ss, 0, sizeof ss);
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, text.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    len = sizeof *a4;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    len = sizeof *a6;
    return true;
  }
  return false;
}

enum Verdict { PASS, LIMITED, SHED };

Verdict Take(Responder* r, const std::string& key, double now, bool saturated) {
  if (now - r->epochAtMs >= 1000) {
    r->epoch++;
    r->epochAtMs = now;
    r->clientsBefore = r->clientsNow;
    r->clientsNow = 0;
  }
  auto it = r->buckets.find(key);
  if (it == r->buckets.end()) {
    if (r->buckets.size() >= MAX_CLIENTS) r->buckets.clear();
    it = r->buckets.emplace(key, Bucket{r->burst, r->share, now, 0}).first;
  } else if (now > it->second.atMs) {
    double dt = now - it->second.atMs;
    it->second.tokens = std::min(r->burst, it->second.tokens + dt * r->rate / 1000);
    it->second.fair = std::min(r->share, it->second.fair + dt * r->share / 1000);
    it->second.atMs = now;
  }
  Bucket& b = it->second;
  if (b.epoch != r->epoch) {
    b.epoch = r->epoch;
    r->clientsNow++;
  }
  if (b.tokens < 1) return LIMITED;
  b.tokens -= 1;
  if (b.fair >= 1) b.fair -= 1;
  else if (saturated && std::max(r->clientsNow, r->clientsBefore) > 1) return SHED;
  return PASS;
}

void Loop(std::shared_ptr<Responder> r) {
  static thread_local char bufs[BATCH][MAX_QUERY + 1];
  static thread_local char outs[BATCH][MAX_CACHED];
  mmsghdr in[BATCH], out[BATCH];
  iovec inIov[BATCH], outIov[BATCH];
  sockaddr_storage from[BATCH];
  int fullRun = 0;  // receives in a row that filled the batch
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      inIov[i] = {bufs[i], sizeof bufs[i]};
      memset(&in[i], 0, sizeof in[i]);
      in[i].msg_hdr.msg_iov = &inIov[i];
      in[i].msg_hdr.msg_iovlen = 1;
      in[i].msg_hdr.msg_name = &from[i];
      in[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int n = recvmmsg(r->fd, in, BATCH, MSG_WAITFORONE, nullptr);
    if (r->stopping.load()) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOMEM || errno == ENOBUFS) continue;
      if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) continue;  // an ICMP error for an earlier reply
      break;
    }
    double now = NowMs();
    fullRun = n == BATCH ? fullRun + 1 : 0;
    int nout = 0;
    for (int i = 0; i < n; i++) {
      size_t len = in[i].msg_len;
      if (len > MAX_QUERY) {
        r->oversized++;
        continue;
      }
      std::string src = AddrKey(from[i]);
      Verdict v = Take(r.get(), src, now, fullRun >= SATURATED);
      if (v != PASS) {
        (v == LIMITED ? r->limited : r->shed)++;
        continue;
      }
      bool hit = false;
      if (len >= 12) {
        std::string key = src;
        key.append(bufs[i] + 2, len - 2);
        std::lock_guard<std::mutex> g(r->mu);
        auto it = r->cache.find(key);
        if (it != r->cache.end()) {
          memcpy(outs[nout], it->second.response.data(), it->second.response.size());
          memcpy(outs[nout], bufs[i], 2);  // the query's id
          outIov[nout] = {outs[nout], it->second.response.size()};
          memset(&out[nout], 0, sizeof out[nout]);
          out[nout].msg_hdr.msg_iov = &outIov[nout];
          out[nout].msg_hdr.msg_iovlen = 1;
          out[nout].msg_hdr.msg_name = &from[i];
          out[nout].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
          nout++;
          r->hits[it->second.kind & 1]++;
          hit = true;
        }
      }
      if (hit) continue;
      char text[INET6_ADDRSTRLEN] = "";
      int port;
      if (from[i].ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&from[i]);
        inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
        port = ntohs(a->sin_port);
      } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&from[i]);
        inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        port = ntohs(a->sin6_port);
      }
      auto* m = new Miss{std::string(bufs[i], len), text, port};
      napi_status st = r->onMiss.NonBlockingCall(m, [](Napi::Env env, Napi::Function cb, Miss* m) {
        Napi::Buffer<char> b = Napi::Buffer<char>::Copy(env, m->query.data(), m->query.size());
        std::string address = std::move(m->address);
        int port = m->port;
        delete m;
        cb.Call({b, Napi::String::New(env, address), Napi::Number::New(env, port)});
      });
      if (st != napi_ok) {
        delete m;
        r->queueFull++;
      }
    }
    for (int sent = 0; sent < nout;) {
      int k = sendmmsg(r->fd, out + sent, nout - sent, MSG_DONTWAIT);
      if (k < 0) {
        if (errno == EINTR) continue;
        break;  // a full send buffer drops the rest, as a loaded UDP server does
      }
      sent += k;
    }
  }
  {
    std::lock_guard<std::mutex> g(r->mu);  // reply() sends under the lock: never to a reused fd
    close(r->fd);
    r->fd = -1;
  }
  r->onMiss.Release();
  r->onClose.BlockingCall([](Napi::Env env, Napi::Function cb) { cb.Call({}); });
  r->onClose.Release();
}

std::shared_ptr<Responder>* Unwrap(const Napi::Value& v) {
  return v.As<Napi::External<std::shared_ptr<Responder>>>().Data();
}

// dnsResponder(address, port, ratePerS, burst, sharePerS, onMiss(query, address, port), onClose()) -> handle
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) {
    Napi::TypeError::New(env, "dnsResponder: 7 arguments").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string address = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  sockaddr_storage ss;
  socklen_t len;
  if (!ToSockaddr(address, port, ss, len)) {
    Napi::TypeError::New(env, "dnsResponder: invalid address " + address).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    MakeError(env, Failure{errno, "socket", address}).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int one = 1;
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    int e = errno;
    close(fd);
    MakeError(env, Failure{e, "bind", address + " port " + std::to_string(port)}).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto r = std::make_shared<Responder>();
  r->fd = fd;
  r->rate = info[2].As<Napi::Number>().DoubleValue();
  r->burst = info[3].As<Napi::Number>().DoubleValue();
  r->share = info[4].As<Napi::Number>().DoubleValue();
  r->onMiss = Napi::ThreadSafeFunction::New(env, info[5].As<Napi::Function>(), "burrow:dns", QUEUE, 1);
  r->onClose = Napi::ThreadSafeFunction::New(env, info[6].As<Napi::Function>(), "burrow:dns-close", 0, 1);
  std::thread(Loop, r).detach();
  return Napi::External<std::shared_ptr<Responder>>::New(env, new std::shared_ptr<Responder>(r),
                                                         [](Napi::Env, std::shared_ptr<Responder>* p) { delete p; });
}

// dnsResponderReply(handle, reply, address, port, query, kind): sends `reply`; kind >= 0 caches
// it for `query` from `address`. Returns false when the socket's buffer is full (dropped).
Napi::Value Reply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Responder> r = *Unwrap(info[0]);
  Napi::Buffer<char> reply = info[1].As<Napi::Buffer<char>>();
  std::string address = info[2].As<Napi::String>().Utf8Value();
  int port = info[3].As<Napi::Number>().Int32Value();
  int kind = info[5].As<Napi::Number>().Int32Value();
  sockaddr_storage ss;
  socklen_t len;
  if (!ToSockaddr(address, port, ss, len)) {
    Napi::TypeError::New(env, "dnsResponderReply: invalid address " + address).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::lock_guard<std::mutex> g(r->mu);
  if (r->stopping.load() || r->fd < 0) return Napi::Boolean::New(env, false);
  if (kind >= 0 && reply.Length() <= MAX_CACHED) {
    Napi::Buffer<char> q = info[4].As<Napi::Buffer<char>>();
    if (q.Length() >= 12) {
      std::string key = AddrKey(ss);
      key.append(q.Data() + 2, q.Length() - 2);
      if (r->cache.size() >= MAX_ENTRIES) r->cache.clear();
      r->cache[key] = Entry{std::string(reply.Data(), reply.Length()), kind};
    }
  }
  ssize_t n;
  do n = sendto(r->fd, reply.Data(), reply.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), len);
  while (n < 0 && errno == EINTR);
  return Napi::Boolean::New(env, n >= 0);
}

// dnsResponderClear(handle): forgets every cached answer (the records changed).
Napi::Value Clear(const Napi::CallbackInfo& info) {
  std::shared_ptr<Responder> r = *Unwrap(info[0]);
  std::lock_guard<std::mutex> g(r->mu);
  r->cache.clear();
  return info.Env().Undefined();
}

// dnsResponderStats(handle) -> { answered, nxdomain, limited, queueFull, oversized, cached }
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Responder> r = *Unwrap(info[0]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("answered", Napi::Number::New(env, static_cast<double>(r->hits[0].load())));
  o.Set("nxdomain", Napi::Number::New(env, static_cast<double>(r->hits[1].load())));
  o.Set("limited", Napi::Number::New(env, static_cast<double>(r->limited.load())));
  o.Set("shed", Napi::Number::New(env, static_cast<double>(r->shed.load())));
  o.Set("queueFull", Napi::Number::New(env, static_cast<double>(r->queueFull.load())));
  o.Set("oversized", Napi::Number::New(env, static_cast<double>(r->oversized.load())));
  std::lock_guard<std::mutex> g(r->mu);
  o.Set("cached", Napi::Number::New(env, static_cast<double>(r->cache.size())));
  return o;
}

// dnsResponderStop(handle): the thread closes the socket and calls onClose.
Napi::Value Stop(const Napi::CallbackInfo& info) {
  std::shared_ptr<Responder> r = *Unwrap(info[0]);
  std::lock_guard<std::mutex> g(r->mu);
  if (!r->stopping.exchange(true) && r->fd >= 0) shutdown(r->fd, SHUT_RD);
  return info.Env().Undefined();
}

}  // namespace

namespace burrow {

void InitDnsResponder(Napi::Env env, Napi::Object exports) {
  exports.Set("dnsResponder", Napi::Function::New(env, Start));
  exports.Set("dnsResponderReply", Napi::Function::New(env, Reply));
  exports.Set("dnsResponderClear", Napi::Function::New(env, Clear));
  exports.Set("dnsResponderStats", Napi::Function::New(env, Stats));
  exports.Set("dnsResponderStop", Napi::Function::New(env, Stop));
}

}  // namespace burrow
