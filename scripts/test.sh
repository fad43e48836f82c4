#!/usr/bin/env bash
# The whole test suite, as CI runs it: type check, import layering, bundle, then every unit and
# integration test with ava. Integration tests need root (they create network namespaces); outside
# CI they skip with a note when run unprivileged, in CI they fail. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
unset NODE_EXTRA_CA_CERTS   # ~100 ms per Node start, and tests start many
# `npm test` puts node_modules/.bin first on PATH, where ava's dependency @vercel/nft installs a
# program called "nft": tests must reach the system's tools.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
bin=node_modules/.bin
passed=0
failed=0
step() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
step typecheck "$bin/tsc" --noEmit -p .
step layers "$bin/tsx" scripts/check_layers.ts
step bundle node scripts/bundle.mjs

# The machine's own network stack must come out of the suite as it went in: every test works
# in namespaces it creates. Compared: link names, iptables and nft rules, forwarding sysctls, netns.
host_state() {
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
  nft list ruleset 2>/dev/null
  cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding
  ls /run/netns 2>/dev/null
}
before=$(host_state)

tap=$(mktemp)
smoke=$(mktemp)
trap 'rm -f "$tap" "$smoke"' EXIT
"$bin/ava" --tap "$@" | tee "$tap"
ava_pass=$(awk '/^# pass /{print $3}' "$tap" | tail -1)
ava_fail=$(awk '/^# fail /{print $3}' "$tap" | tail -1)
ava_skip=$(awk '/^# skip /{print $3}' "$tap" | tail -1)
ava_notok=$(grep -c '^not ok' "$tap")
passed=$((passed + ${ava_pass:-0}))
failed=$((failed + ${ava_fail:-0}))
# A crash before ava's summary (no "# pass" line) is a failure too.
if [ -z "$ava_pass" ] || [ "$ava_notok" -gt "${ava_fail:-0}" ]; then failed=$((failed + 1)); fi
# burrow's plugin suites once more, every call of theirs to burrow's own plugins through a native
# launcher and `burrow cni serve` (the resident path; test/helpers/cni.ts fails a call it did not
# serve). Skipped when only some tests are asked for.
RESIDENT_SUITES=(test/differential_test.ts test/burrow_plugins_test.ts test/portmap_test.ts test/firewall_test.ts test/robustness_test.ts test/macvlan_test.ts test/dhcp_test.ts test/load_test.ts)
if [ $# -eq 0 ]; then
  rtap=$(mktemp)
  echo "# the plugin suites through the resident path (BURROW_TEST_CNI=resident)"
  BURROW_TEST_CNI=resident "$bin/ava" --tap "${RESIDENT_SUITES[@]}" | tee "$rtap"
  r_pass=$(awk '/^# pass /{print $3}' "$rtap" | tail -1)
  r_fail=$(awk '/^# fail /{print $3}' "$rtap" | tail -1)
  r_skip=$(awk '/^# skip /{print $3}' "$rtap" | tail -1)
  passed=$((passed + ${r_pass:-0}))
  failed=$((failed + ${r_fail:-0}))
  ava_skip=$((${ava_skip:-0} + ${r_skip:-0}))
  if [ -z "$r_pass" ] || [ "$(grep -c '^not ok' "$rtap")" -gt "${r_fail:-0}" ]; then failed=$((failed + 1)); fi
  rm -f "$rtap"
fi
# The bench smoke run takes minutes (longer than ava's inactivity timeout), so it is a step of
# its own, after ava rather than beside it: it times real traffic, and two cores shared with the
# integration tests made it flaky. Skipped when only some tests are asked for.
if [ $# -eq 0 ]; then
  "$bin/tsx" test/bench_smoke.ts > "$smoke" 2>&1; rc=$?
  cat "$smoke"
  if [ $rc -eq 0 ]; then passed=$((passed + 1)); echo "ok: bench smoke run"; else failed=$((failed + 1)); echo "FAILED: bench smoke run"; fi
fi
if [ -n "${CI:-}" ] && [ "${ava_skip:-0}" -gt 0 ]; then echo "CI treats skipped tests as failures"; failed=$((failed + ava_skip)); fi
after=$(host_state)
if [ "$before" = "$after" ]; then
  passed=$((passed + 1)); echo "ok: host network stack untouched"
else
  failed=$((failed + 1)); echo "FAILED: the suite changed the host's own network stack:"; diff <(echo "$before") <(echo "$after") | head -40
fi
echo
echo "${passed} passed, ${failed} failed, ${ava_skip:-0} skipped"
[ "$failed" -eq 0 ]
