// Browser tests of the operator console in Firefox: Debian's firefox-esr,
// driven by puppeteer-core over WebDriver BiDi (Playwright drives only its
// own patched Firefox builds, which cannot be installed here), against a
// real `hookstream dev`. A smoke set beside console.test.mjs's full run in
// Chromium: log in, search and trail, a replay through a CSRF-protected
// form, the live tail's EventSource, refusals without a session or CSRF
// token, and every main page at a phone's width. Run by
// scripts/console-test.sh.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import puppeteer from 'puppeteer-core';

import { eventually, run, startWorld, stopWorld, token } from './harness.mjs';

const timeout = 60_000; // for what waits on the consumer

let world, dest, dev, browser, page;
let requests = 0; // requests the pages made, to show that they are seen
const foreign = []; // requests the pages made to another origin
const pageErrors = []; // script errors and console errors (a CSP violation is one)

before(async () => {
  world = await startWorld();
  ({ dest, dev } = world);
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    // Firefox would otherwise look for updates, add-ons and safe-browsing
    // lists on the internet; the tests must reach only the console.
    extraPrefsFirefox: {
      'app.update.enabled': false,
      'browser.safebrowsing.downloads.remote.enabled': false,
      'network.captive-portal-service.enabled': false,
      'network.connectivity-service.enabled': false,
    },
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.on('request', (req) => {
    const url = req.url();
    requests++;
    if (/^https?:/.test(url) && !url.startsWith(dev.adminURL + '/')) foreign.push(url);
  });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(msg.text());
  });
});

after(async () => {
  await browser?.close();
  await stopWorld(world);
});

// at waits until the page's URL matches re: a boosted link or form (htmx)
// changes it with the history API, which is no navigation to wait for.
async function at(re) {
  await page.waitForFunction((src) => new RegExp(src).test(location.href), { timeout: 10_000 }, re.source);
}

const texts = (selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent.trim()));

test('Firefox: log in with the admin token', async () => {
  await page.goto(`${dev.adminURL}/console/`);
  assert.match(page.url(), /\/console\/login$/, 'a page without a session sends you to the login');
  await page.locator('#token').fill('not-the-token');
  await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]').click()]);
  assert.match(await page.$eval('.error', (e) => e.textContent), /not the admin token/);
  await page.locator('#token').fill(token);
  await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]').click()]);
  assert.match(page.url(), /\/console\/events$/);
  assert.match(await page.$eval('header .who', (e) => e.textContent), /console session [0-9a-f]{16}/);
  assert.ok(!page.url().includes(token), 'the token is in no URL');
  const session = (await browser.cookies()).find((c) => c.name === 'hookstream_console');
  assert.ok(session?.httpOnly && session.sameSite === 'Strict' && session.path === '/console', JSON.stringify(session));
});

test('Firefox: search an event and open its trail', async () => {
  const id = `evt_ff_search_${run}`;
  await dev.send(id, `cus_ff_search_${run}`, { amount: 1200 });
  await eventually('the event is processed', async () => (await dev.status(id)) === 'PROCESSED');
  await page.goto(`${dev.adminURL}/console/events`);
  await page.locator('input[name=event_id]').fill(id);
  await page.locator('form.search button[type=submit]').click();
  await at(new RegExp(`event_id=${id}`)); // the search is in the URL, to share or reload
  await page.waitForFunction((want) => [...document.querySelectorAll('a.event-link')].map((a) => a.textContent).join() === want,
    { timeout: 10_000 }, id);
  await page.locator('a.event-link').click();
  await page.waitForSelector('#event-status');
  assert.equal(await page.$eval('#event-status', (e) => e.textContent), 'PROCESSED');
  const actions = await texts('ol.timeline .action');
  assert.deepEqual(actions.filter((a) => a === 'ACCEPTED' || a === 'PROCESSED'), ['ACCEPTED', 'PROCESSED'], actions.join(' '));
});

test('Firefox: replay a dead-lettered event (a CSRF-protected form) and watch it become PROCESSED', async () => {
  const id = `evt_ff_dead_${run}`;
  dest.refuse.add(id);
  await dev.send(id, `cus_ff_dead_${run}`);
  await eventually('the event is DEAD', async () => (await dev.status(id)) === 'DEAD');
  await page.goto(`${dev.adminURL}/console/events?status=DEAD&event_id=${id}`);
  await page.locator('a.event-link').click();
  await page.waitForSelector('#event-status');
  assert.equal(await page.$eval('#event-status', (e) => e.textContent), 'DEAD');
  dest.refuse.delete(id);
  await page.locator('form.replay button[type=submit]').click();
  await page.waitForSelector('.flash');
  assert.match(await page.$eval('.flash', (e) => e.textContent), new RegExp(`Replaying ${id}`));
  // The page refreshes itself (htmx, every 2 s) while the event can change.
  await page.waitForFunction(() => document.querySelector('#event-status')?.textContent === 'PROCESSED', { timeout });
  const actions = await texts('ol.timeline .action');
  const dead = actions.indexOf('DEAD_LETTERED'), replayed = actions.indexOf('REPLAYED');
  assert.ok(dead >= 0 && replayed > dead && actions.lastIndexOf('PROCESSED') > replayed, actions.join(' '));
  assert.ok(dest.delivered.includes(id));
  const who = (await page.$eval('header .who', (e) => e.textContent)).trim();
  const trail = (await dev.admin(`/admin/events/generic/${id}`)).trail;
  assert.equal(trail.find((r) => r.action === 'REPLAYED')?.reason, `admin API: ${who}`, 'audited under the operator\'s session');
});

test('Firefox: the live tail (an EventSource) shows a new decision as it is made', async () => {
  const customer = `cus_ff_tail_${run}`;
  const id = `evt_ff_tail_${run}`;
  await page.goto(`${dev.adminURL}/console/tail`);
  await page.locator('input[name=customer_id]').fill(customer);
  await Promise.all([page.waitForNavigation(), page.locator('form.search button[type=submit]').click()]);
  await page.waitForSelector('#tail-state[data-state=live]');
  await dev.send(`evt_ff_tail_other_${run}`, `cus_ff_tail_other_${run}`);
  await dev.send(id, customer);
  await page.waitForSelector(`#tail tr[data-event="${id}"][data-action="ACCEPTED"]`);
  await page.waitForSelector(`#tail tr[data-event="${id}"][data-action="PROCESSED"]`, { timeout });
  const cells = await page.$$eval(`#tail tr[data-event="${id}"][data-action="ACCEPTED"] td`, (tds) => tds.map((td) => td.textContent));
  assert.equal(cells[4], customer);
  assert.equal(await page.$$eval(`#tail tr[data-event="evt_ff_tail_other_${run}"]`, (rows) => rows.length), 0,
    'another customer\'s decision is not shown');
});

test('Firefox: a request without the session or without the CSRF token is refused', async () => {
  const errorsBefore = pageErrors.length;
  const form = { customer_id: 'nobody', csrf: 'forged' };
  const post = (f) => fetch('/console/customers/unpark', { method: 'POST', body: new URLSearchParams(f) }).then((r) => r.status);
  const anonymous = await browser.createBrowserContext(); // no cookie
  try {
    const p = await anonymous.newPage();
    await p.goto(`${dev.adminURL}/console/customers`);
    assert.match(p.url(), /\/console\/login$/, 'a page without the session sends you to the login');
    assert.equal(await p.evaluate(post, form), 401);
  } finally {
    await anonymous.close();
  }
  // With the session but a forged CSRF token, from the console's own origin.
  assert.equal(await page.evaluate(post, form), 403);
  pageErrors.splice(errorsBefore); // a browser may log the refusals as errors
});

test('Firefox: at a phone\'s width (390 px) no page scrolls sideways', async () => {
  // A parked customer, so that the customers page has rows to lay out.
  const blocker = `evt_ff_phone_blocker_with_a_long_identifier_${run}`;
  const customer = `cus_ff_phone_${run}`;
  dest.refuse.add(blocker);
  await dev.send(blocker, customer, { note: 'a body with a long line '.repeat(20) });
  await eventually('the blocker is DEAD', async () => (await dev.status(blocker)) === 'DEAD');
  await dev.send(`evt_ff_phone_waiting_${run}`, customer);
  await eventually('the customer is parked', async () =>
    (await dev.admin('/admin/customers/parked')).some((c) => c.customer_id === customer));

  await page.setViewport({ width: 390, height: 844 });
  const pages = ['/console/overview', '/console/events', `/console/events/generic/${blocker}`,
    '/console/customers', `/console/customers/skip?source=generic&customer_id=${customer}`,
    '/console/replay', `/console/tail?customer_id=${customer}`];
  const wide = [];
  for (const p of pages) {
    await page.goto(`${dev.adminURL}${p}`);
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    }));
    assert.equal(innerWidth, 390, 'the viewport is a phone\'s');
    if (scrollWidth > innerWidth) wide.push(`${p}: ${scrollWidth} px`);
  }
  await page.setViewport({ width: 1280, height: 800 });
  assert.deepEqual(wide, [], 'pages wider than the phone');
});

test('Firefox: nothing loaded from another host; no script error', () => {
  assert.ok(requests > 10, `the pages' requests are seen (${requests})`);
  assert.deepEqual(foreign, [], 'every request went to the console\'s own origin');
  assert.deepEqual(pageErrors, [], 'no script error, no CSP violation');
});
