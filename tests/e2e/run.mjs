// Browser end-to-end tests of the watchpost dashboard.
//
//   cd tests/e2e && npm ci && node run.mjs
//
// Builds what it needs (`cargo xtask dashboard`, then `cargo build --bin watchpost`;
// both are no-ops when up to date) unless WATCHPOST_BIN names a binary to use, starts
// that binary on a free loopback port with a temporary SQLite database and bearer
// tokens, and drives Debian's /usr/bin/chromium (CHROMIUM overrides) through
// playwright-core with a fresh profile. Never downloads a browser.
//
// Each check reports on its own line ("ok" / "FAIL"); the exit status is 1 if any
// failed. Screenshots, the server log and results.json go to tests/e2e/artifacts/.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, createWriteStream, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const artifacts = join(here, 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKENS = {
  viewer: 'e2e-viewer-token-000',
  operator: 'e2e-operator-token-000',
  admin: 'e2e-admin-token-0000',
  agent: 'e2e-agent-token-0000',
};
// Identity-provider sign-in: HS256 JWTs signed here with the secret the server knows.
const JWT_SECRET = 'e2e-hs256-secret-of-at-least-32-bytes!';
const JWT_ISSUER = 'https://idp.e2e.example/realms/ops';

function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ iss: JWT_ISSUER, aud: 'watchpost', iat: Math.floor(Date.now() / 1000), ...claims });
  const sig = createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
// The suite's PostgreSQL (scripts/test.sh), for the PostgreSQL page; unset: its empty state.
const PG_URL = process.env.WATCHPOST_TEST_DATABASE_URL || '';
const results = [];
// Processes a check starts (a `watchpost agent`), ended in main's cleanup.
const children = [];
// One alerting rule that always fires and one recording rule, for the Rules page.
const RULES = `groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: E2EAlwaysFiring
        expr: vector(1) > 0
        labels:
          severity: info
        annotations:
          summary: always firing (browser test)
      - record: e2e:cpu_usage:avg
        expr: avg(system_cpu_core_usage_ratio)
`;

function log(msg) {
  process.stdout.write(`${msg}\n`);
}

async function check(name, fn) {
  const started = Date.now();
  try {
    const detail = await fn();
    const ms = Date.now() - started;
    results.push({ name, ok: true, ms, detail: detail ?? null });
    log(`ok   - ${name} (${ms} ms)${detail ? ` — ${detail}` : ''}`);
    return true;
  } catch (e) {
    const ms = Date.now() - started;
    const message = (e && e.message ? e.message : String(e)).split('\n').slice(0, 6).join('\n       ');
    results.push({ name, ok: false, ms, error: message });
    log(`FAIL - ${name} (${ms} ms): ${message}`);
    return false;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function build() {
  if (process.env.WATCHPOST_BIN) return resolve(process.env.WATCHPOST_BIN);
  const cargo = process.env.CARGO || 'cargo';
  for (const args of [['xtask', 'dashboard'], ['build', '--bin', 'watchpost']]) {
    log(`# cargo ${args.join(' ')}`);
    const r = spawnSync(cargo, args, { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`cargo ${args.join(' ')} failed (${r.status})`);
  }
  const dir = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target');
  return join(dir, 'debug', 'watchpost');
}

/** The environment for watchpost processes: without WATCHPOST_* (configuration to them). */
function serverEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WATCHPOST_')));
}

/** Starts `watchpost agent` streaming this host's metrics to `base` as `name`; its output goes to artifacts/agent-NAME.log. */
function startAgent(bin, base, name) {
  const child = spawn(bin, ['agent', '--server', base, '--token', TOKENS.agent, '--name', name], {
    cwd: tmpdir(), // no watchpost.toml there: the flags alone configure it
    stdio: ['ignore', 'pipe', 'pipe'],
    env: serverEnv(),
  });
  children.push(child);
  const logFile = createWriteStream(join(artifacts, `agent-${name}.log`));
  child.stdout.pipe(logFile);
  child.stderr.pipe(logFile);
  return child;
}

/** Starts the server; resolves with its base URL once it logs `listening on ADDR`. */
function startServer(bin, dir) {
  const config = `listen = "127.0.0.1:0"
database_url = "sqlite://${join(dir, 'watchpost.db')}"

[collect]
interval = "500ms"

[rules]
files = ["${join(dir, 'rules', '*.yml')}"]
evaluation_interval = "1s"

# Notifications go to a webhook nobody listens on: they stay queued (retrying), so the
# Overview's notification-queue chart has something to show.
[route]
receiver = "e2e-hook"
group_wait = "1s"

[[receivers]]
name = "e2e-hook"
webhook = { url = "http://127.0.0.1:9/e2e-hook" }

[log]
format = "json"

[[auth.tokens]]
token = "${TOKENS.viewer}"
role = "viewer"
name = "e2e-viewer"

[[auth.tokens]]
token = "${TOKENS.operator}"
role = "operator"
name = "e2e-operator"

[[auth.tokens]]
token = "${TOKENS.admin}"
role = "admin"
name = "e2e-admin"

[[auth.tokens]]
token = "${TOKENS.agent}"
role = "agent"
name = "e2e-agent"

[auth.jwt]
issuer = "${JWT_ISSUER}"
audience = "watchpost"
hs256_secret = "${JWT_SECRET}"
algorithms = ["HS256"]
${PG_URL ? `
# The test suite's PostgreSQL, watched by the collector (the PostgreSQL page).
[[postgres]]
name = "e2e-pg"
url = "${PG_URL}"
interval = "1s"
timeout = "800ms"
` : ''}`;
  const configPath = join(dir, 'watchpost.toml');
  writeFileSync(configPath, config);
  mkdirSync(join(dir, 'rules'), { recursive: true });
  writeFileSync(join(dir, 'rules', 'e2e.yml'), RULES);
  const child = spawn(bin, ['serve', '--config', configPath], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    // WATCHPOST_* variables are configuration to the server (WATCHPOST_BIN,
    // WATCHPOST_TEST_DATABASE_URL… would be unknown keys): the file alone configures it.
    env: serverEnv(),
  });
  const logFile = createWriteStream(join(artifacts, 'server.log'));
  child.stdout.pipe(logFile);
  return new Promise((resolvePromise, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`server did not start in 60 s:\n${buf.slice(-2000)}`)), 60_000);
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${buf.slice(-2000)}`)));
    child.stderr.on('data', (d) => {
      logFile.write(d);
      buf += d.toString();
      const m = buf.match(/listening on ([0-9.]+:[0-9]+)/);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ child, base: `http://${m[1]}` });
      }
    });
  });
}

async function api(base, method, path, body, token = TOKENS.operator) {
  const res = await fetch(base + path, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text };
}

async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main() {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  assert(existsSync(CHROMIUM), `${CHROMIUM} not found (apt-get install chromium)`);
  const bin = build();
  assert(existsSync(bin), `${bin} not found`);
  const dir = mkdtempSync(join(tmpdir(), 'watchpost-e2e-'));
  const profile = mkdtempSync(join(tmpdir(), 'watchpost-e2e-chromium-'));
  let server;
  let context;
  try {
    server = await startServer(bin, dir);
    log(`# watchpost at ${server.base} (${bin})`);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1440, height: 900 },
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    await run(server.base, context, bin);
  } catch (e) {
    results.push({ name: 'setup', ok: false, error: String(e && e.stack ? e.stack : e) });
    log(`FAIL - setup: ${e && e.stack ? e.stack : e}`);
  } finally {
    if (context) await context.close().catch(() => {});
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    if (server) server.child.kill('SIGTERM');
    rmSync(profile, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
  writeFileSync(join(artifacts, 'results.json'), JSON.stringify(results, null, 2));
  const failed = results.filter((r) => !r.ok);
  log(`\n${results.length - failed.length} passed, ${failed.length} failed; artifacts in ${artifacts}`);
  process.exit(failed.length ? 1 : 0);
}

async function run(base, context, bin) {
  const consoleErrors = [];
  // Errors a check provokes on purpose (the browser logs failed requests).
  const expected = [];
  context.on('console', (m) => {
    const text = `${m.text()} (${m.location()?.url || ''})`;
    if (m.type() === 'error' && !expected.some((re) => re.test(text))) consoleErrors.push(text);
  });
  context.on('weberror', (e) => consoleErrors.push(`page error: ${e.error().message}`));
  const page = context.pages()[0] || (await context.newPage());
  // Layout shifts as the browser measures them (Core Web Vitals' CLS, without input).
  await page.addInitScript(() => {
    window.__cls = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
    }).observe({ type: 'layout-shift', buffered: true });
  });

  const loaded = await check('overview loads: stream live, first chart drawn', async () => {
    const started = Date.now();
    await page.goto(base + '/', { waitUntil: 'load' });
    await page.waitForSelector('#chart-cpu', { timeout: 15_000 });
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 15_000 });
    await page.waitForFunction(() => document.querySelector('#chart-cpu')?.dataset.lastT, null, { timeout: 15_000 });
    return `first CPU point drawn ${Date.now() - started} ms after navigation`;
  });

  await check('the page loads with no console errors', async () => {
    await page.waitForTimeout(1000);
    assert(consoleErrors.length === 0, `console errors:\n${consoleErrors.join('\n')}`);
  });

  await check('a chart\'s latest point changes within 3 s', async () => {
    assert(loaded, 'needs the loaded overview');
    const before = await page.$eval('#chart-cpu', (e) => e.dataset.lastT);
    const started = Date.now();
    await page.waitForFunction(
      (b) => {
        const t = document.querySelector('#chart-cpu')?.dataset.lastT;
        return t && t !== b;
      },
      before,
      { timeout: 3_000 },
    );
    const after = await page.$eval('#chart-cpu', (e) => e.dataset.lastT);
    return `data-last-t ${before} → ${after} after ${Date.now() - started} ms`;
  });

  await check('no layout shift while data arrives (CLS < 0.05)', async () => {
    await page.waitForTimeout(1500);
    const cls = await page.evaluate(() => window.__cls);
    assert(cls < 0.05, `cumulative layout shift ${cls.toFixed(4)}`);
    return `CLS ${cls.toFixed(4)}`;
  });

  await check('screenshot: overview (desktop and phone width)', async () => {
    await page.screenshot({ path: join(artifacts, 'overview.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.screenshot({ path: join(artifacts, 'overview-phone.png'), fullPage: false });
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForTimeout(400);
    await page.screenshot({ path: join(artifacts, 'overview-dark.png'), fullPage: false });
    await page.emulateMedia({ colorScheme: 'light' });
    assert(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
  });

  // Alerts: open the page through the nav (client-side routing), then ingest.
  let alertId = null;
  const marker = `e2e-${Date.now().toString(36)}`;
  await check('an alert ingested through POST /api/v1/alerts appears in the table within 2 s', async () => {
    await page.click('nav a[href="/alerts"]');
    await page.waitForSelector('#alerts-table', { timeout: 5_000 });
    await page.waitForFunction(() => !document.body.innerText.includes('Loading…'), null, { timeout: 5_000 });
    const body = {
      message: `Disk almost full on ${marker}`,
      severity: 'critical',
      source: 'e2e',
      labels: { alertname: 'E2EDiskAlmostFull', instance: marker },
      annotations: { summary: 'written by the browser test' },
    };
    const posted = Date.now();
    const r = await api(base, 'POST', '/api/v1/alerts', body);
    assert(r.status === 202, `POST /api/v1/alerts answered ${r.status}: ${r.text.slice(0, 300)}`);
    alertId = r.json?.ids?.[0];
    assert(alertId !== undefined && alertId !== null, `no id in ${r.text}`);
    await page.waitForSelector(`#alerts-table tr[data-id="${alertId}"]`, { timeout: 2_000 });
    return `row for alert ${alertId} visible ${Date.now() - posted} ms after the POST`;
  });

  await check('Sign-in with a pasted JWT shows who and until when; an expired one is refused with its reason', async () => {
    const now = Math.floor(Date.now() / 1000);
    expected.push(/status of 401 .*\/api\/v1\/whoami/);
    await page.click('.topbar button[title="Access token"]');
    await page.fill('#token-input', jwt({ sub: 'u-1', preferred_username: 'jwt-ops', watchpost_role: 'operator', exp: now - 3600 }));
    await page.click('#token-save');
    await page.waitForSelector('#token-error', { timeout: 5_000 });
    const refused = await page.textContent('#token-error');
    assert(/expired/.test(refused), `#token-error: ${refused}`);
    await page.fill('#token-input', jwt({ sub: 'u-1', preferred_username: 'jwt-ops', watchpost_role: 'operator', exp: now + 3600 }));
    await page.click('#token-save');
    await page.waitForFunction(() => /jwt-ops · operator/.test(document.querySelector('#signed-in')?.textContent ?? ''), null, { timeout: 5_000 });
    await page.click('.topbar button[title="Access token"]');
    await page.waitForSelector('#whoami', { timeout: 5_000 });
    const who = await page.textContent('#whoami');
    assert(/jwt-ops \(operator, identity provider\) until /.test(who), `#whoami: ${who}`);
    await page.keyboard.press('Escape');
    return who.trim();
  });

  await check('Ack with an operator token acknowledges it (checked through the API)', async () => {
    assert(alertId !== null, 'needs the alert from the previous check');
    await page.click('.topbar button[title="Access token"]');
    await page.fill('#token-input', TOKENS.operator);
    await page.fill('#user-input', 'e2e-browser');
    await page.click('#token-save');
    await page.click(`#alerts-table tr[data-id="${alertId}"] a.title`);
    await page.waitForSelector('#alert-drawer #ack-button', { timeout: 5_000 });
    await page.fill('#ack-comment', 'looking into it');
    await page.click('#ack-button');
    const acked = await waitFor(async () => {
      const r = await api(base, 'GET', `/api/v1/alerts/${alertId}`, null, TOKENS.viewer);
      return r.status === 200 && r.json?.acknowledged ? r.json : null;
    }, 5_000, `GET /api/v1/alerts/${alertId} to show acknowledged`);
    assert(acked.acknowledged.by === 'e2e-browser', `acknowledged.by = ${JSON.stringify(acked.acknowledged)}`);
    await page.waitForSelector('#acked-by', { timeout: 5_000 });
    // The classifier explains itself in the drawer, as the API does.
    const why = await page.textContent('#alert-drawer #type-reason');
    assert(why && why === acked.classification?.type_reason, `#type-reason: ${why} vs ${JSON.stringify(acked.classification)}`);
    const sev = await page.textContent('#alert-drawer #severity-reason');
    assert(sev && sev === acked.classification?.severity_reason, `#severity-reason: ${sev}`);
    await page.screenshot({ path: join(artifacts, 'alert-detail.png') });
    return `acknowledged by ${acked.acknowledged.by}`;
  });

  await check('reload on the /alerts deep link works', async () => {
    await page.goto(base + '/alerts?severity=critical', { waitUntil: 'load' });
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#alerts-table', { timeout: 10_000 });
    const sel = await page.$eval('#filter-severity', (e) => e.value);
    assert(sel === 'critical', `severity filter after reload is ${sel}`);
    if (alertId !== null) {
      await page.waitForSelector(`#alerts-table tr[data-id="${alertId}"]`, { timeout: 5_000 });
      await page.goto(`${base}/alerts/${alertId}`, { waitUntil: 'load' });
      await page.reload({ waitUntil: 'load' });
      await page.waitForSelector('#alert-drawer', { timeout: 10_000 });
    }
    await page.screenshot({ path: join(artifacts, 'alerts.png') });
  });

  await check("A rule alert's drawer shows its PNG chart", async () => {
    const list = await waitFor(async () => {
      const r = await api(base, 'GET', '/api/v1/alerts?state=firing&source=watchpost', null, TOKENS.viewer);
      const a = r.json?.alerts?.find((x) => x.alertname === 'E2EAlwaysFiring');
      return a ?? null;
    }, 20_000, 'the E2EAlwaysFiring rule alert');
    await page.goto(`${base}/alerts/${list.id}`, { waitUntil: 'load' });
    await page.waitForSelector('#alert-drawer #alert-chart', { timeout: 10_000 });
    const size = await waitFor(async () => {
      const s = await page.$eval('#alert-drawer #alert-chart', (img) => [img.complete, img.naturalWidth, img.naturalHeight]);
      return s[0] && s[1] > 0 ? s : null;
    }, 10_000, 'the chart image to load');
    assert(size[1] === 640 && size[2] === 300, `chart is ${size[1]}x${size[2]}, want 640x300`);
    await page.screenshot({ path: join(artifacts, 'alert-chart.png') });
    return `${size[1]}x${size[2]} PNG`;
  });

  let silenceId = null;
  await check('Silence from the alert drawer (prefilled from its labels) mutes it', async () => {
    assert(alertId !== null, 'needs the alert from the ingest check');
    await page.goto(`${base}/alerts/${alertId}`, { waitUntil: 'load' });
    await page.waitForSelector('#alert-drawer #silence-button', { timeout: 10_000 });
    await page.click('#alert-drawer #silence-button');
    await page.waitForSelector('#silence-form', { timeout: 5_000 });
    const prefilled = await page.$$eval('#silence-form .matcher', (rows) =>
      rows.map((r) => {
        const [name, value] = r.querySelectorAll('input');
        return `${name.value}=${value.value}`;
      }),
    );
    assert(
      prefilled.includes('alertname=E2EDiskAlmostFull') && prefilled.includes(`instance=${marker}`),
      `matchers prefilled as ${JSON.stringify(prefilled)}`,
    );
    await page.fill('#silence-duration', '1h');
    await page.fill('#silence-comment', 'maintenance (browser test)');
    await page.click('#silence-submit');
    const silence = await waitFor(async () => {
      const r = await api(base, 'GET', '/api/v1/silences', null, TOKENS.viewer);
      return (r.json || []).find((x) => x.comment === 'maintenance (browser test)');
    }, 5_000, 'the silence in GET /api/v1/silences');
    silenceId = silence.id;
    assert(silence.createdBy === 'e2e-browser', `createdBy ${silence.createdBy}`);
    assert(silence.status?.state === 'active', `state ${JSON.stringify(silence.status)}`);
    await waitFor(async () => {
      const r = await api(base, 'GET', `/api/v1/alerts/${alertId}`, null, TOKENS.viewer);
      return r.json?.silenced === true;
    }, 5_000, `alert ${alertId} to be silenced`);
    await page.waitForSelector('#alert-drawer #silenced-by', { timeout: 5_000 });
    await page.screenshot({ path: join(artifacts, 'alert-silenced.png') });
    return `silence ${silenceId}: ${prefilled.join(', ')}`;
  });

  await check('Silences page: create one, then expire it (checked through the API)', async () => {
    await page.goto(base + '/silences', { waitUntil: 'load' });
    await page.waitForSelector('#silences-table', { timeout: 10_000 });
    if (silenceId !== null) await page.waitForSelector(`#silences-table tr[data-id="${silenceId}"]`, { timeout: 5_000 });
    await page.click('#new-silence');
    await page.waitForSelector('#silence-form', { timeout: 5_000 });
    await page.click('#silence-form button:has-text("+ matcher")');
    await page.fill('#silence-form .matcher input[aria-label="label name"]', 'job');
    await page.fill('#silence-form .matcher input[aria-label="value"]', 'e2e-batch');
    await page.fill('#silence-duration', '30m');
    await page.fill('#silence-comment', 'created on the silences page');
    await page.click('#silence-submit');
    const created = await waitFor(async () => {
      const r = await api(base, 'GET', '/api/v1/silences', null, TOKENS.viewer);
      return (r.json || []).find((x) => x.comment === 'created on the silences page');
    }, 5_000, 'the new silence in the API');
    const m = created.matchers;
    assert(m.length === 1 && m[0].name === 'job' && m[0].value === 'e2e-batch' && !m[0].isRegex && m[0].isEqual,
      `matchers ${JSON.stringify(m)}`);
    const row = `#silences-table tr[data-id="${created.id}"]`;
    await page.waitForSelector(`${row}[data-state="active"]`, { timeout: 5_000 });
    await page.screenshot({ path: join(artifacts, 'silences.png'), fullPage: true });
    await page.click(`${row} button:has-text("Expire")`);
    await waitFor(async () => {
      const r = await api(base, 'GET', `/api/v1/silences/${created.id}`, null, TOKENS.viewer);
      return r.json?.status?.state === 'expired';
    }, 5_000, `silence ${created.id} to be expired`);
    await page.waitForSelector(row, { state: 'detached', timeout: 5_000 });
    return `silence ${created.id} created and expired`;
  });

  await check('Rules page: groups with state and health; reload needs an admin token', async () => {
    await page.goto(base + '/rules', { waitUntil: 'load' });
    await page.waitForSelector('#reload-rules', { timeout: 10_000 });
    await page.waitForSelector('text=E2EAlwaysFiring', { timeout: 10_000 });
    await page.waitForSelector('.st-firing', { timeout: 10_000 });
    // The operator token saved earlier is not enough.
    expected.push(/status of 403 .*\/-\/reload/);
    await page.click('#reload-rules');
    await page.waitForSelector('.toast.error:has-text("Reload failed")', { timeout: 5_000 });
    await page.evaluate((t) => sessionStorage.setItem('watchpost.token', t), TOKENS.admin);
    await page.click('#reload-rules');
    await page.waitForSelector('.toast.ok:has-text("Rules reloaded: 2 rules in 1 group from 1 file")', { timeout: 5_000 });
    await page.screenshot({ path: join(artifacts, 'rules.png'), fullPage: true });
    await page.evaluate((t) => sessionStorage.setItem('watchpost.token', t), TOKENS.operator);
  });

  await check('Cluster page: this node listed alive and leading, as GET /api/v1/cluster says', async () => {
    const r = await api(base, 'GET', '/api/v1/cluster', null, TOKENS.viewer);
    assert(r.status === 200, `GET /api/v1/cluster: ${r.status}`);
    const me = r.json.self;
    await page.goto(base + '/cluster', { waitUntil: 'load' });
    const row = `#cluster-table tr[data-id="${me}"]`;
    await page.waitForSelector(row, { timeout: 10_000 });
    const got = await page.$eval(row, (tr) => [tr.dataset.role, tr.dataset.state, tr.textContent]);
    assert(got[0] === 'leader' && got[1] === 'alive', `row ${JSON.stringify(got)}`);
    assert(got[2].includes('(this node)'), `row text ${got[2]}`);
    const summary = await page.textContent('#cluster-summary');
    assert(summary.includes(`leader ${me}`) && summary.includes(`epoch ${r.json.epoch}`), `summary ${summary}`);
    await page.screenshot({ path: join(artifacts, 'cluster.png'), fullPage: true });
    return summary;
  });

  await check('Heartbeats page: heartbeats created by their first ping show up, the never-pinged one first', async () => {
    for (const [path, want] of [['/api/v1/heartbeats/e2e-backup?period=1h', 'up'], ['/api/v1/heartbeats/e2e-dump/start?period=1d&grace=1h', 'new']]) {
      const r = await api(base, 'POST', path, null, TOKENS.operator);
      assert(r.status === 200 && r.json.status === want, `${path}: ${r.status} ${JSON.stringify(r.json)}`);
    }
    await page.goto(base + '/heartbeats', { waitUntil: 'load' });
    await page.waitForSelector('#heartbeats-table tr[data-name="e2e-backup"]', { timeout: 10_000 });
    const rows = await page.$$eval('#heartbeats-table tbody tr', (trs) => trs.map((tr) => [tr.dataset.name, tr.dataset.status]));
    const names = rows.map((r) => r[0]);
    assert(names.indexOf('e2e-dump') < names.indexOf('e2e-backup'), `order ${JSON.stringify(rows)}`);
    assert(JSON.stringify(rows).includes('["e2e-backup","up"]'), `rows ${JSON.stringify(rows)}`);
    assert(JSON.stringify(rows).includes('["e2e-dump","new"]'), `rows ${JSON.stringify(rows)}`);
    const summary = await page.textContent('#heartbeats-summary');
    assert(summary.includes('2 heartbeats · 0 missed or failed'), `summary ${summary}`);
    await page.screenshot({ path: join(artifacts, 'heartbeats.png'), fullPage: true });
    return summary;
  });

  await check('Agents page: a real watchpost agent shows up connected and its host is selectable', async () => {
    const agent = startAgent(bin, base, 'e2e-agent');
    let exited = null;
    agent.on('exit', (code) => { exited = code; });
    await page.goto(base + '/agents', { waitUntil: 'load' });
    const row = '#agents-table tr[data-name="e2e-agent"][data-status="connected"]';
    await page.waitForSelector(row, { timeout: 20_000 }).catch((e) => {
      throw new Error(exited !== null ? `the agent exited (${exited}); see artifacts/agent-e2e-agent.log` : e.message);
    });
    const summary = await page.textContent('#agents-summary');
    assert(summary.includes('1 agent · 1 connected · 0 down'), `summary ${summary}`);
    const r = await api(base, 'GET', '/api/v1/agents', null, TOKENS.viewer);
    assert(r.status === 200 && r.json.some((a) => a.name === 'e2e-agent' && a.connected), `/api/v1/agents: ${r.status} ${r.text}`);
    await page.screenshot({ path: join(artifacts, 'agents.png'), fullPage: true });

    // Its name links to the overview with its host selected; the host charts subscribe
    // to its series only, the service's own charts stay as they are.
    const sent = [];
    const onSocket = (ws) => ws.on('framesent', (f) => sent.push(String(f.payload)));
    page.on('websocket', onSocket);
    try {
      await page.click(`${row} a`);
      await page.waitForFunction(() => location.pathname === '/' && new URLSearchParams(location.search).get('host') === 'e2e-agent', null, { timeout: 5_000 });
      await page.reload({ waitUntil: 'load' });
      await page.waitForSelector('#host-select', { timeout: 10_000 });
      assert((await page.$eval('#host-select', (e) => e.value)) === 'e2e-agent', 'the selector shows the agent after a reload');
      await page.waitForFunction(() => document.querySelector('#chart-cpu')?.dataset.lastT && document.querySelector('#chart-memory')?.dataset.lastT, null, { timeout: 30_000 });
      const subscribed = sent.map((t) => { try { return JSON.parse(t); } catch { return {}; } }).filter((m) => m.type === 'subscribe').pop();
      assert(subscribed, 'no subscribe frame');
      assert(subscribed.series.includes('system_cpu_usage_ratio{instance="e2e-agent"}'), `subscribed ${JSON.stringify(subscribed.series)}`);
      assert(subscribed.series.includes('system_disk_used_bytes{instance="e2e-agent"} / system_disk_total_bytes{instance="e2e-agent"}'), `subscribed ${JSON.stringify(subscribed.series)}`);
      assert(subscribed.series.includes('watchpost_notification_queue_depth'), `subscribed ${JSON.stringify(subscribed.series)}`);
      const agentPoints = await page.$eval('#chart-cpu', (e) => e.dataset.points);
      await page.screenshot({ path: join(artifacts, 'overview-agent.png'), fullPage: true });

      // Back to this server: re-subscribed without a reload, its own series only.
      sent.length = 0;
      await page.selectOption('#host-select', '');
      await page.waitForFunction(() => !new URLSearchParams(location.search).has('host'), null, { timeout: 5_000 });
      await waitFor(async () => sent.some((t) => t.includes('system_cpu_usage_ratio{instance=\\"\\"}')), 5_000, 'a subscribe to this server\'s series');
      await page.waitForFunction(() => document.querySelector('#chart-cpu')?.dataset.lastT, null, { timeout: 10_000 });

      // Without a token (GET /api/v1/agents needs a viewer), the selector lists the agents
      // with data, and the Overview provokes no 401.
      const token = await page.evaluate(() => sessionStorage.getItem('watchpost.token'));
      await page.evaluate(() => sessionStorage.removeItem('watchpost.token'));
      try {
        await page.reload({ waitUntil: 'load' });
        await page.waitForSelector('#host-select option[value="e2e-agent"]', { state: 'attached', timeout: 15_000 });
      } finally {
        await page.evaluate((t) => t && sessionStorage.setItem('watchpost.token', t), token);
      }
      return `${summary.trim()}; agent CPU chart drew ${agentPoints} point(s)`;
    } finally {
      page.off('websocket', onSocket);
    }
  });

  await check('History & stats: counts, noisiest alerts and the Markdown report', async () => {
    await page.goto(base + '/history?window=1h', { waitUntil: 'load' });
    await page.waitForSelector('#history-1h[aria-pressed="true"]', { timeout: 10_000 });
    await page.waitForSelector('#by-source .bar-row[data-name="e2e"]', { timeout: 10_000 });
    const total = Number(await page.$eval('#tile-total .value', (e) => e.textContent));
    assert(total >= 1, `total ${total}`);
    await page.waitForSelector('#top-alerts a.title:has-text("E2EDiskAlmostFull")', { timeout: 5_000 });
    await page.waitForSelector('#report-markdown h1, #report-markdown h2', { timeout: 5_000 });
    const width = await page.$eval('#by-severity .bar-row[data-name="critical"] .fill', (e) => e.getBoundingClientRect().width);
    assert(width > 0, 'the critical bar is drawn');
    await page.screenshot({ path: join(artifacts, 'history.png'), fullPage: true });
    return `${total} alert(s) in the last hour`;
  });

  await check('Overview: the notification queue chart shows the retrying webhook receiver', async () => {
    await page.goto(base + '/', { waitUntil: 'load' });
    await page.waitForSelector('#chart-notify .legend span[title="e2e-hook"]', { timeout: 20_000 });
    await page.waitForSelector('#chart-batch .legend span[title="alerts capacity"]', { timeout: 5_000 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: join(artifacts, 'overview.png'), fullPage: true });
  });

  await check('dark and light themes follow the OS', async () => {
    const colors = {};
    for (const scheme of ['dark', 'light']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.waitForTimeout(300);
      colors[scheme] = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      await page.screenshot({ path: join(artifacts, `overview-${scheme}.png`) });
    }
    assert(colors.dark === 'rgb(13, 17, 23)', `dark background ${colors.dark}`);
    assert(colors.light === 'rgb(244, 246, 249)', `light background ${colors.light}`);
    return `dark ${colors.dark}, light ${colors.light}`;
  });

  await check('PostgreSQL page: the watched server is up with its connections, or the page says how to add one', async () => {
    await page.goto(base + '/postgres', { waitUntil: 'load' });
    if (!PG_URL) {
      assert(process.env.CI !== 'true', 'CI=true but WATCHPOST_TEST_DATABASE_URL is unset (scripts/test.sh sets it)');
      await page.waitForSelector('#postgres-empty', { timeout: 10_000 });
      return 'no PostgreSQL configured: empty state shown';
    }
    const row = '#postgres-servers tr[data-server="e2e-pg"][data-state="up"]';
    await page.waitForSelector(row, { timeout: 15_000 });
    await page.waitForFunction((sel) => /\d+ \/ \d+/.test(document.querySelector(sel + ' td[data-col="connections"]')?.textContent ?? ''), row, { timeout: 15_000 });
    const conns = await page.textContent(`${row} td[data-col="connections"]`);
    const r = await api(base, 'GET', '/api/v1/query?query=pg_settings_max_connections', null, TOKENS.viewer);
    const max = r.json?.data?.result?.[0]?.value?.[1];
    assert(max && conns.includes(`/ ${max}`), `connections cell ${conns} vs max_connections ${max}`);
    await page.screenshot({ path: join(artifacts, 'postgres.png'), fullPage: true });
    return `e2e-pg up, connections ${conns.trim()}`;
  });

  await check('every page fits a phone screen (390 px) without horizontal scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const wide = [];
    const pages = [['overview', '/'], ['alerts', '/alerts?state=all'], ['history', '/history'], ['rules', '/rules'], ['silences', '/silences'], ['cluster', '/cluster'], ['postgres', '/postgres'], ['heartbeats', '/heartbeats'], ['agents', '/agents']];
    if (alertId !== null) pages.push(['alert-detail', `/alerts/${alertId}`]);
    for (const [name, path] of pages) {
      await page.goto(base + path, { waitUntil: 'load' });
      await page.waitForSelector('#main > *', { timeout: 10_000 });
      await page.waitForTimeout(700);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (overflow > 0) wide.push(`${path}: ${overflow}px too wide`);
      await page.screenshot({ path: join(artifacts, `${name}-phone.png`) });
    }
    await page.setViewportSize({ width: 1440, height: 900 });
    assert(wide.length === 0, wide.join('; '));
  });

  await check('a dropped stream shows "reconnecting", recovers, and backfills the gap from query_range', async () => {
    const p = await context.newPage();
    const sockets = [];
    let refuse = false;
    await p.routeWebSocket('**/api/v1/stream', (ws) => {
      if (refuse) {
        ws.close({ code: 1013, reason: 'e2e: server away' });
        return;
      }
      const server = ws.connectToServer();
      sockets.push({ ws, server });
    });
    const backfills = [];
    p.on('response', async (res) => {
      const url = new URL(res.url());
      if (url.pathname !== '/api/v1/query_range') return;
      backfills.push({
        query: url.searchParams.get('query'),
        start: Number(url.searchParams.get('start')) * 1000,
        end: Number(url.searchParams.get('end')) * 1000,
        status: res.status(),
        at: Date.now(),
      });
    });
    await p.goto(base + '/', { waitUntil: 'load' });
    await p.waitForSelector('#conn[data-state="live"]', { timeout: 10_000 });
    await p.waitForFunction(() => document.querySelector('#chart-cpu')?.dataset.lastT, null, { timeout: 10_000 });
    const lastBefore = Number(await p.$eval('#chart-cpu', (e) => e.dataset.lastT));
    // The server "goes away" for a few seconds: the first reconnects are refused.
    refuse = true;
    for (const s of sockets) await s.ws.close({ code: 1012, reason: 'e2e restart' });
    await p.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 3_000 });
    await p.screenshot({ path: join(artifacts, 'reconnecting.png') });
    await p.waitForTimeout(2_500);
    const dropped = Date.now();
    refuse = false;
    await p.waitForSelector('#conn[data-state="live"]', { timeout: 20_000 });
    const before = await p.$eval('#chart-cpu', (e) => e.dataset.lastT);
    await p.waitForFunction((b) => document.querySelector('#chart-cpu')?.dataset.lastT !== b, before, { timeout: 3_000 });
    // The gap since the last sample before the drop is fetched from /api/v1/query_range.
    const gap = await waitFor(
      async () => backfills.find((b) => b.at >= dropped && b.query === 'system_cpu_usage_ratio{instance=""}' && Math.abs(b.start - lastBefore) < 1_000),
      5_000,
      `a query_range backfill of system_cpu_usage_ratio{instance=""} starting at ${lastBefore}`,
    );
    assert(gap.status === 200, `query_range answered ${gap.status}`);
    assert(gap.end - gap.start >= 2_000, `the backfilled gap is ${gap.end - gap.start} ms`);
    await p.close();
    return `reconnected after ${sockets.length - 1} new connection(s); gap ${Math.round((gap.end - gap.start) / 100) / 10} s backfilled`;
  });

  await check('no console errors during the whole run', async () => {
    assert(consoleErrors.length === 0, `console errors:\n${consoleErrors.join('\n')}`);
  });
}

main().catch((e) => {
  log(`FAIL - runner: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
