/** Durations and times as podman prints them (Docker's go-units and Go's time formatting). */

/** Docker's go-units HumanDuration, which podman prints ("Less than a second", "About a minute", "3 hours"). */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

/** "7 seconds ago" for an ISO time. */
export function ago(iso: string | undefined, now = Date.now()): string {
  return iso ? `${humanDuration(now - Date.parse(iso))} ago` : '';
}

/** Go's time.Time String(): 2026-12-02 03:02:26.889 +0000 UTC (UTC; burrow keeps milliseconds). */
export function goTime(iso: string): string {
  const d = new Date(iso);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const frac = String(d.getUTCMilliseconds()).padStart(3, '0').replace(/0+$/, '');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}${frac ? `.${frac}` : ''} +0000 UTC`;
}

/** RFC 3339 as podman's inspect prints times (trailing zeros dropped; "0001-01-01T00:00:00Z" for none). */
export function inspectTime(iso: string | undefined): string {
  if (!iso) return '0001-01-01T00:00:00Z';
  return new Date(iso).toISOString().replace(/\.(\d+)Z$/, (_m, f: string) => (f.replace(/0+$/, '') ? `.${f.replace(/0+$/, '')}Z` : 'Z'));
}
