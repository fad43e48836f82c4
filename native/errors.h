// The addon's error convention, shared by its source files: every failure becomes a JS Error
// with `syscall`, `errno` (positive), `code` ("EEXIST") and the object (`path`, `netns`,
// `ifname`); native/errors.ts rewraps it into a SyscallError.
#pragma once

#include <napi.h>
#include <string.h>

#include <string>

namespace burrow {

struct Failure {
  int err = 0;
  std::string syscall;
  std::string object;
};

inline const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "EUNKNOWN";
}

inline Napi::Error MakeError(Napi::Env env, const Failure& f, const std::string& netns = "",
                      const std::string& ifname = "") {
  std::string msg = f.syscall;
  if (!f.object.empty()) msg += " \"" + f.object + "\"";
  if (!netns.empty()) msg += " in netns \"" + netns + "\"";
  msg += ": " + std::string(ErrnoName(f.err)) + " (" + strerror(f.err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("syscall", Napi::String::New(env, f.syscall));
  e.Set("errno", Napi::Number::New(env, f.err));
  e.Set("code", Napi::String::New(env, ErrnoName(f.err)));
  if (!f.object.empty()) e.Set("path", Napi::String::New(env, f.object));
  if (!netns.empty()) e.Set("netns", Napi::String::New(env, netns));
  if (!ifname.empty()) e.Set("ifname", Napi::String::New(env, ifname));
  return e;
}

// native/dns_responder.cc: the DNS server's UDP fast path.
void InitDnsResponder(Napi::Env env, Napi::Object exports);

}  // namespace burrow
