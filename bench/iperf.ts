/** Parsing iperf3 -J output (3.x): TCP and UDP results, and iperf3's own error reports. */

export interface IperfResult {
  /** Receiver-side throughput. */
  gbps: number;
  bytes: number;
  seconds: number;
  /** UDP only: datagrams lost on the way, as the receiver counted them. */
  lostPercent?: number;
  jitterMs?: number;
}

export class IperfError extends Error {}

type Sum = { bytes?: number; seconds?: number; bits_per_second?: number; lost_percent?: number; jitter_ms?: number };

/**
 * The result of one iperf3 -J client run. iperf3 may print text before the JSON (a warning) and,
 * when it fails, a JSON object with "error": both are handled.
 */
export function parseIperf(text: string): IperfResult {
  const start = text.indexOf('{');
  if (start < 0) throw new IperfError(`iperf3 printed no JSON: ${text.trim().slice(0, 200) || '(nothing)'}`);
  let j: { error?: string; start?: { test_start?: { protocol?: string } }; end?: { sum_received?: Sum; sum?: Sum } };
  try {
    j = JSON.parse(text.slice(start));
  } catch (e) {
    throw new IperfError(`iperf3 JSON is truncated or invalid (${(e as Error).message})`);
  }
  if (j.error) throw new IperfError(`iperf3: ${j.error}`);
  const udp = j.start?.test_start?.protocol === 'UDP';
  const recv = j.end?.sum_received;
  if (!recv || typeof recv.bits_per_second !== 'number') throw new IperfError('iperf3 JSON has no end.sum_received');
  const out: IperfResult = { gbps: recv.bits_per_second / 1e9, bytes: recv.bytes ?? 0, seconds: recv.seconds ?? 0 };
  if (udp) {
    out.lostPercent = recv.lost_percent ?? j.end?.sum?.lost_percent ?? 0;
    out.jitterMs = recv.jitter_ms ?? j.end?.sum?.jitter_ms ?? 0;
  }
  return out;
}

/**
 * True for the failures that mean "the server was not listening yet": iperf3 -s closes its
 * listening socket after each test and opens a new one, so a client that comes right after
 * the previous test can be refused, or told the server is still busy. Worth a retry; every
 * other failure is a result.
 */
export function iperfNotReady(message: string): boolean {
  return /unable to connect to server: Connection refused|server is busy/i.test(message);
}

/** "iperf 3.12 (cJSON 1.7.15)" -> "3.12". */
export function iperfVersion(text: string): string {
  return /iperf (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1] ?? 'unknown';
}
