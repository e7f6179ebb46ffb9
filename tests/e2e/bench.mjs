// Dashboard benchmarks (BENCHMARKS.md, "Dashboard"):
//
//   WATCHPOST_BIN=target/release/watchpost node --experimental-websocket bench.mjs
//
// 1. time to first chart on loopback (navigation start → first CPU point drawn), 5 cold loads;
// 2. sample → DOM latency: for every chart, the time from a sample's timestamp (the
//    scrape) to the chart's `data-last-t` showing it, over 60 s of live updates;
// 3. server CPU with 100 WebSocket clients subscribed to every Overview expression,
//    against the same server idle, 60 s each (utime + stime from /proc).
// The server runs with the default `collect.interval` (1s). Uses Debian's chromium via
// playwright-core; never downloads a browser.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const BIN = resolve(process.env.WATCHPOST_BIN || join(root, 'target', 'release', 'watchpost'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CLIENTS = Number(process.env.BENCH_CLIENTS || 100);
const SECONDS = Number(process.env.BENCH_SECONDS || 60);
const HZ = 100; // USER_HZ on Linux

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

/** The Overview's expressions, read from dashboard/src/panels.rs ($__rate_interval at 1s). */
function overviewExprs() {
  const src = readFileSync(join(root, 'dashboard', 'src', 'panels.rs'), 'utf8');
  const out = new Set();
  for (const m of src.matchAll(/(?:\bq|\blimit)\(\s*"((?:[^"\\]|\\.)*)"/g)) {
    out.add(m[1].replace(/\\"/g, '"').replaceAll('$__rate_interval', '15s'));
  }
  return [...out];
}

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / HZ; // utime, stime (fields 14, 15)
}

function start(dir) {
  writeFileSync(
    join(dir, 'watchpost.toml'),
    `listen = "127.0.0.1:0"\ndatabase_url = "sqlite://${join(dir, 'wp.db')}"\n[rules]\nfiles = []\n[log]\nformat = "json"\n`,
  );
  const child = spawn(BIN, ['serve', '--config', join(dir, 'watchpost.toml')], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WATCHPOST_'))),
  });
  return new Promise((ok, fail) => {
    let buf = '';
    child.on('exit', (c) => fail(new Error(`server exited ${c}: ${buf.slice(-500)}`)));
    child.stderr.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on ([0-9.]+:[0-9]+)/);
      if (m) ok({ child, base: `http://${m[1]}` });
    });
  });
}

async function browserBench(base) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
  const firsts = [];
  for (let i = 0; i < 5; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await ctx.newPage();
    await page.goto(base + '/', { waitUntil: 'commit' });
    await page.waitForFunction(() => document.querySelector('#chart-cpu')?.dataset.lastT, null, { timeout: 20_000 });
    firsts.push(await page.evaluate(() => performance.now()));
    await ctx.close();
  }
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForFunction(() => document.querySelector('#chart-cpu')?.dataset.lastT, null, { timeout: 20_000 });
  // Only live updates count: the first seconds also draw backfilled history.
  await sleep(3000);
  await page.evaluate(() => {
    window.__lat = [];
    const obs = new MutationObserver((muts) => {
      const now = Date.now();
      for (const m of muts) {
        const t = Number(m.target.dataset.lastT);
        if (t) window.__lat.push(now - t);
      }
    });
    for (const el of document.querySelectorAll('section.chart')) {
      obs.observe(el, { attributes: true, attributeFilter: ['data-last-t'] });
    }
  });
  await sleep(SECONDS * 1000);
  const lat = await page.evaluate(() => window.__lat);
  await browser.close();
  return { firsts, lat };
}

async function wsBench(base, pid) {
  const exprs = overviewExprs();
  const url = base.replace('http://', 'ws://') + '/api/v1/stream';
  await sleep(2000);
  let c0 = cpuSeconds(pid);
  let t0 = Date.now();
  await sleep(SECONDS * 1000);
  const idle = (cpuSeconds(pid) - c0) / ((Date.now() - t0) / 1000);

  let samples = 0;
  let ticks = 0;
  const sockets = [];
  for (let i = 0; i < CLIENTS; i++) {
    const ws = new WebSocket(url);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'subscribe', series: exprs }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'sample') samples++;
      else if (m.type === 'tick') ticks++;
      else if (m.type === 'error') console.error('stream error', m);
    };
    sockets.push(ws);
  }
  await sleep(3000); // connect and settle
  samples = 0;
  ticks = 0;
  c0 = cpuSeconds(pid);
  t0 = Date.now();
  await sleep(SECONDS * 1000);
  const secs = (Date.now() - t0) / 1000;
  const busy = (cpuSeconds(pid) - c0) / secs;
  for (const ws of sockets) ws.close();
  return { exprs: exprs.length, idle, busy, samplesPerSec: samples / secs, ticksPerSec: ticks / secs };
}

const dir = mkdtempSync(join(tmpdir(), 'watchpost-bench-'));
const { child, base } = await start(dir);
try {
  const { firsts, lat } = await browserBench(base);
  console.log(`time to first chart (ms, 5 cold loads): ${firsts.map((x) => x.toFixed(0)).join(', ')}; median ${pct(firsts, 50).toFixed(0)}`);
  console.log(`sample → DOM latency over ${lat.length} chart updates: p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms, max ${Math.max(...lat)} ms`);
  const ws = await wsBench(base, child.pid);
  console.log(`server CPU, ${ws.exprs} expressions: idle ${(ws.idle * 100).toFixed(2)} % of a core; ${CLIENTS} stream clients ${(ws.busy * 100).toFixed(2)} % (${ws.samplesPerSec.toFixed(0)} sample and ${ws.ticksPerSec.toFixed(0)} tick messages/s received)`);
} finally {
  child.kill('SIGTERM');
  await sleep(500);
  rmSync(dir, { recursive: true, force: true });
}
