// The dashboard's browser test: headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core. It starts nothing: ./dev test runs `rydes serve` and passes
//
//   RYDES_UI_URL         the gateway, e.g. http://127.0.0.1:40123
//   RYDES_UI_TOKEN       an admin token (never printed)
//   RYDES_UI_SCREENSHOT  where to save the screenshot (default ui-dashboard.png)
//   CHROMIUM             the browser (default /usr/bin/chromium)
//
// It submits a ride (and a little other work, so the page has something to show) through the
// API, opens /ui, signs in with the token, waits for its ride in "Recent rides", checks the
// topology graph shows topic ride-completion and queue customer-loyalty, and that the page
// raised no script error or Content-Security-Policy violation. Exit status 0 on success.
import { chromium } from 'playwright-core';
import { randomUUID } from 'node:crypto';

const BASE = (process.env.RYDES_UI_URL || '').replace(/\/$/, '');
const TOKEN = process.env.RYDES_UI_TOKEN || '';
const SHOT = process.env.RYDES_UI_SCREENSHOT || 'ui-dashboard.png';
const BROWSER = process.env.CHROMIUM || '/usr/bin/chromium';
const DEADLINE_MS = 50000;

function fail(message) {
  console.error(`ui test: FAILED: ${message}`);
  process.exit(1);
}

if (!BASE || !TOKEN) fail('RYDES_UI_URL and RYDES_UI_TOKEN must be set');
setTimeout(() => fail(`not done after ${DEADLINE_MS / 1000} s`), DEADLINE_MS).unref();

async function post(path, body) {
  const res = await fetch(BASE + path, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json().catch(() => null);
  if (res.status >= 300) fail(`POST ${path}: ${res.status} ${json && json.detail}`);
  return json;
}

// The ride this test looks for, and some company for it.
async function submitWork() {
  const customer = `ui-test-${randomUUID().slice(0, 8)}`;
  const ride = await post('/rides', {
    from: 'Alexanderplatz', to: 'Tempelhofer Feld', customer, unicorn: 'shadowfax',
    duration: 660, distance: 5.4, fare: 14.2,
  });
  const trips = [['Berlin Hbf', 'Frankfurt Airport', 61.5, 55.5], ['Potsdam', 'Spandau', 22, 14.1]];
  for (const [from, to, fare, distance] of trips)
    await post('/rides', { from, to, customer: 'cust-42', duration: 1800, distance, fare });
  const when = new Date(Date.now() + 86400e3).toISOString();
  await post('/prebookings', { from: 'Kreuzberg', to: 'Tegel', customer: 'cust-7', when });
  await post('/rfqs', { from: 'Mitte', to: 'Wannsee', customer: 'cust-9', timeout_in_secs: 5 });
  return ride;
}

// Rides every 500 ms until the returned function is called: live charts to look at.
function keepBusy() {
  let on = true;
  const loop = (async () => {
    for (let i = 0; on; i++) {
      const fare = 8 + ((i * 7.3) % 70);
      await post('/rides', {
        from: 'Neukölln', to: 'Moabit', customer: `cust-${i % 5}`, duration: 900,
        distance: 3 + (i % 30), fare: Math.round(fare * 100) / 100,
      });
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return () => {
    on = false;
    return loop;
  };
}

async function main() {
  const health = await fetch(`${BASE}/healthz`).catch((e) => fail(`gateway unreachable: ${e}`));
  if (!health.ok) fail(`/healthz answered ${health.status}`);
  const ride = await submitWork();
  const browser = await chromium.launch({
    executablePath: BROWSER,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    await check(browser, ride);
  } finally {
    await browser.close();
  }
}

async function check(browser, ride) {
  const page = await browser.newPage({ viewport: { width: 1480, height: 1000 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/favicon/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  const res = await page.goto(`${BASE}/ui`);
  if (res.status() !== 200) fail(`/ui answered ${res.status()}`);
  await page.fill('#token', TOKEN);
  await page.click('#connect');
  await page.waitForSelector(`#rides tr[data-ride-id="${ride.id}"]`, { timeout: 20000 });
  const topic = page.locator('#topology g[data-kind="topic"][data-name="ride-completion"]');
  const queue = page.locator('#topology g[data-kind="queue"][data-name="customer-loyalty"]');
  await topic.waitFor({ timeout: 5000 });
  await queue.waitFor({ timeout: 5000 });
  if (!(await topic.textContent()).includes('ride-completion')) fail('topic node without its name');
  if (!(await queue.textContent()).includes('customer-loyalty')) fail('queue node without its name');
  if ((await page.locator('#dlqs button[data-redrive]').count()) === 0) fail('no redrive buttons');
  const row = await page.locator(`#rides tr[data-ride-id="${ride.id}"]`).textContent();
  if (!row.includes(ride.customer)) fail('the ride row does not show its customer');
  // A few more polls with traffic: throughput needs two scrapes, and the sagas and the RFQ move
  // on meanwhile.
  const stop = keepBusy();
  await page.waitForTimeout(5000);
  await stop();
  await page.screenshot({ path: SHOT, fullPage: true });
  if (problems.length) fail(problems.join('; '));
  console.log(`ui test: ok (ride ${ride.id} shown; screenshot ${SHOT})`);
}

main().then(
  () => process.exit(0),
  (e) => fail(e && e.stack ? e.stack : String(e)),
);
