{
  "targets": [
    {
      "target_name": "burrow-ns",
      "type": "executable",
      "sources": ["native/burrow-ns.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "burrow-holder",
      "type": "executable",
      "sources": ["native/burrow-holder.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "burrow-cni",
      "type": "executable",
      "sources": ["native/burrow-cni.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "burrow_native",
      "sources": ["native/addon.cc", "native/dns_responder.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
