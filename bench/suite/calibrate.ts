// The chatty rate: the one that keeps nginx near 40% of its core on this
// machine (machines here differ several times over in system-call cost, so a
// fixed rate would load one machine's nginx lightly and saturate another's),
// capped at what the load side (load generator + echo backend, one core) can
// offer without queueing of its own.
import { performance } from 'node:perf_hooks';
import { cpuIrqMicros } from './proc.js';
import type { RunningProxy } from './proxies.js';
import { chattyArgs, measure } from './scenarios.js';
import type { LoadSide } from './scenarios.js';

/** nginx's share of its core that the chatty rate aims at. */
export const NGINX_SHARE = 0.4;
/**
 * The load side's share of its core that the rate may use. Past about this, the load tool's own
 * queueing shows in the p99 (and on a busy machine it falls behind its schedule).
 */
export const LOAD_SIDE_SHARE = 0.6;
/** After a probe whose load side fell behind its schedule, the rate stays below this share of it. */
const BEHIND_BACKOFF = 0.75;
/** When nginx cannot be probed. */
export const DEFAULT_RATE = 20_000;
const QUICK_DEFAULT_RATE = 500;

export interface Probe {
  readonly through: string;
  readonly rate: number;
  readonly seconds: number;
  /** nginx CPU per echo at the probe rate, µs (null without nginx). */
  readonly nginxCpuUsPerMsg: number | null;
  /** Load side CPU per echo (load generator, echo backend, their core's softirq), µs. */
  readonly loadSideCpuUsPerMsg: number;
  readonly behindSchedule: boolean;
}

export interface Calibration {
  /** The chatty rate every proxy runs at, messages/s. */
  readonly rate: number;
  /** How it was chosen, in one sentence for RESULTS.md. */
  readonly how: string;
  /** The probes run, in order; the last one sets the rate. */
  readonly probes: readonly Probe[];
  /** The rate at which nginx would use NGINX_SHARE of its core. */
  readonly nginxRate: number | null;
  /** The rate at which the load side would use LOAD_SIDE_SHARE of its core. */
  readonly loadSideCap: number | null;
  /** The load side's cap set the rate (it is below nginx's 40% rate, or the default). */
  readonly capped: boolean;
}

/** Two significant digits, rounded down: 12,345 → 12,000. */
export function roundRate(rate: number): number {
  if (!(rate > 0)) return 1;
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(rate)) - 1);
  return Math.max(1, Math.floor(rate / unit) * unit);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A rate given with --rate: no probe, no cap. */
export function fixedRate(rate: number): Calibration {
  return { rate, how: `${fmt(rate)} msg/s, as given with --rate`, probes: [], nginxRate: null, loadSideCap: null, capped: false };
}

/**
 * The softirq share of the load side's core with no load of ours (µs per µs): on a shared machine,
 * other work's network traffic lands there too, and must not count against our load side.
 */
async function irqBaseline(side: LoadSide): Promise<number> {
  if (side.cpu === undefined) return 0;
  const t0 = performance.now();
  const before = cpuIrqMicros(side.cpu);
  await new Promise((r) => setTimeout(r, 1000));
  return (cpuIrqMicros(side.cpu) - before) / ((performance.now() - t0) * 1000);
}

async function probe(
  proxy: RunningProxy,
  isNginx: boolean,
  s: { quick: boolean; warmup: number },
  side: LoadSide,
  rate: number,
  irqShare: number,
): Promise<Probe> {
  const seconds = s.quick ? 0.5 : 2;
  const m = await measure(proxy, chattyArgs(s, rate, seconds), side);
  const echoes = m.result.messages.receivedInWindow;
  if (echoes <= 0) throw new Error(`the calibration probe got no echo back (errors: ${JSON.stringify(m.result.errors)})`);
  const othersIrq = Math.min(m.loadSideIrqUs, irqShare * m.wallUs);
  return {
    through: isNginx ? 'nginx' : 'no proxy',
    rate,
    seconds,
    nginxCpuUsPerMsg: isNginx && m.cpuUs !== null ? m.cpuUs / echoes : null,
    loadSideCpuUsPerMsg: (m.loadSideCpuUs - othersIrq) / echoes,
    behindSchedule: m.result.behindSchedule,
  };
}

/**
 * Runs the chatty load at a probe rate through `proxy` (nginx when it runs, else no proxy) and
 * scales: nginx's CPU per echo gives the rate for NGINX_SHARE of its core, the load side's gives
 * its cap. CPU per message falls as the rate grows (fixed costs spread), so when the estimate is
 * far from the probe rate, a probe at the estimate refines it. A probe whose load side fell behind
 * its schedule (a busy machine) is not trusted, and the rate stays under 3/4 of its rate.
 */
export async function calibrate(proxy: RunningProxy, isNginx: boolean, s: { quick: boolean; warmup: number }, side: LoadSide): Promise<Calibration> {
  const probes: Probe[] = [];
  const maxProbes = s.quick ? 1 : 3;
  let rate = s.quick ? 200 : 5000;
  let trusted: Probe | undefined;
  /** The lowest rate at which the load side fell behind: the rate stays below it. */
  let ceiling = Infinity;
  const irqShare = s.quick ? 0 : await irqBaseline(side);
  for (let i = 0; i < maxProbes; i++) {
    const p = await probe(proxy, isNginx, s, side, rate, irqShare);
    probes.push(p);
    if (p.behindSchedule && !s.quick) {
      ceiling = Math.min(ceiling, BEHIND_BACKOFF * rate);
      rate = roundRate(Math.min(ceiling, trusted === undefined ? Infinity : target(estimate(trusted, s.quick), ceiling)));
      continue;
    }
    trusted = p;
    const next = roundRate(target(estimate(p, s.quick), ceiling));
    if (Math.abs(next - rate) <= 0.2 * rate) break;
    rate = next;
  }
  const basis = trusted ?? (probes[probes.length - 1] as Probe);
  const { nginxRate, loadSideCap, wanted } = estimate(basis, s.quick);
  const chosen = roundRate(target({ loadSideCap, wanted }, ceiling));
  const capped = chosen < roundRate(wanted);
  const sideText =
    `the load side (load generator + echo backend + their core's softirq) used ${basis.loadSideCpuUsPerMsg.toFixed(1)} µs per echo, ` +
    `so ${fmt(loadSideCap)} msg/s would take ${LOAD_SIDE_SHARE * 100}% of its core`;
  let how: string;
  if (nginxRate !== null && basis.nginxCpuUsPerMsg !== null) {
    how =
      `calibrated: at ${fmt(basis.rate)} msg/s nginx used ${basis.nginxCpuUsPerMsg.toFixed(1)} µs of CPU per echo, so ${fmt(nginxRate)} msg/s keeps it near ` +
      `${NGINX_SHARE * 100}% of its core; ${sideText}` +
      (capped ? `: **the load side's cap binds**, and nginx runs at about ${Math.round((chosen / nginxRate) * NGINX_SHARE * 100)}% of its core` : '');
  } else {
    how = `nginx could not be probed, so ${fmt(wanted)} msg/s by default; ${sideText}${capped ? ": **the load side's cap binds**" : ''}`;
  }
  if (Number.isFinite(ceiling))
    how += `; the load side fell behind its schedule in a probe at ${fmt(ceiling / BEHIND_BACKOFF)} msg/s, so the rate stays under ${fmt(ceiling)}`;
  if (trusted === undefined && !s.quick) how += '; **every probe fell behind its schedule (a busy machine): the rate is a rough estimate**';
  return { rate: chosen, how: `${fmt(chosen)} msg/s (${how})`, probes, nginxRate, loadSideCap: Number.isFinite(loadSideCap) ? loadSideCap : null, capped };
}

/** The rate to run at: nginx's 40% rate, unless the load side's cap or a rate it fell behind at is lower. */
function target(e: { loadSideCap: number; wanted: number }, ceiling: number): number {
  return Math.min(e.wanted, e.loadSideCap, ceiling);
}

function estimate(p: Probe, quick: boolean): { nginxRate: number | null; loadSideCap: number; wanted: number } {
  const nginxRate = p.nginxCpuUsPerMsg !== null && p.nginxCpuUsPerMsg > 0 ? (NGINX_SHARE * 1e6) / p.nginxCpuUsPerMsg : null;
  const loadSideCap = p.loadSideCpuUsPerMsg > 0 ? (LOAD_SIDE_SHARE * 1e6) / p.loadSideCpuUsPerMsg : Infinity;
  return { nginxRate, loadSideCap, wanted: nginxRate ?? (quick ? QUICK_DEFAULT_RATE : DEFAULT_RATE) };
}
