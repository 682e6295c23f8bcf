// Browser tests of the operator console: Debian's Chromium, driven by
// playwright-core, against a real `hookstream dev`. Run by
// scripts/console-test.sh, which builds the binary and installs this
// directory's pinned packages.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

import { eventually, run, startWorld, stopWorld, token } from './harness.mjs';

const shots = process.env.SCREENSHOT_DIR; // unset: no screenshots

let world, dest, dev, browser, context, page;
const foreign = []; // requests the pages made to another origin
const pageErrors = []; // script errors and console errors (a CSP violation is one)

async function screenshot(name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

before(async () => {
  world = await startWorld();
  ({ dest, dev } = world);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-background-networking'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.on('request', (req) => {
    if (!req.url().startsWith(dev.adminURL + '/')) foreign.push(req.url());
  });
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('console', (msg) => {
    // The login with a wrong token is answered 401 on purpose.
    if (msg.type() === 'error' && !/status of 401/.test(msg.text())) pageErrors.push(msg.text());
  });
});

after(async () => {
  await browser?.close();
  await stopWorld(world);
});

test('log in with the admin token', async () => {
  await page.goto(`${dev.adminURL}/console/`);
  assert.match(page.url(), /\/console\/login$/, 'a page without a session sends you to the login');
  await page.fill('#token', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error');
  assert.match(await page.textContent('.error'), /not the admin token/);
  await screenshot('login');
  await page.fill('#token', token);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/console\/events$/);
  assert.match(await page.textContent('header .who'), /console session [0-9a-f]{16}/);
  assert.ok(!page.url().includes(token), 'the token is in no URL');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'hookstream_console');
  assert.ok(session?.httpOnly && session.sameSite === 'Strict' && session.path === '/console', JSON.stringify(session));
});

test('search an event and open its trail', async () => {
  const id = `evt_search_${run}`;
  await dev.send(id, `cus_search_${run}`, { amount: 1200, currency: 'eur' });
  await eventually('the event is processed', async () => (await dev.admin(`/admin/events?event_id=${id}`)).events[0]?.status === 'PROCESSED');
  await page.goto(`${dev.adminURL}/console/events`);
  await page.fill('input[name=event_id]', id);
  await page.click('form.search button[type=submit]');
  await page.waitForURL(new RegExp(`event_id=${id}`)); // the search is in the URL, to share or reload
  await eventually('only the event is listed', async () => (await page.locator('a.event-link').allTextContents()).join() === id);
  await page.click(`a.event-link:text-is("${id}")`);
  await page.waitForSelector('#event-status');
  assert.equal(await page.textContent('#event-status'), 'PROCESSED');
  const actions = await page.locator('ol.timeline .action').allTextContents();
  assert.deepEqual(actions.filter((a) => a === 'ACCEPTED' || a === 'PROCESSED'), ['ACCEPTED', 'PROCESSED'], actions.join(' '));
});

test('unpark a parked customer and watch its events drain in order', async () => {
  const customer = `cus_park_${run}`;
  const blocker = `evt_block_${run}`;
  const waiting = [`evt_w1_${run}`, `evt_w2_${run}`, `evt_w3_${run}`];
  dest.refuse.add(blocker);
  await dev.send(blocker, customer, { note: 'the destination refuses this one', items: [1, 2, 3] });
  await eventually('the blocker is DEAD', async () => (await dev.admin(`/admin/events?event_id=${blocker}`)).events[0]?.status === 'DEAD');
  for (const id of waiting) await dev.send(id, customer);

  await page.click('nav >> text=Customers in trouble');
  const row = page.locator(`table.parked tr[data-customer="${customer}"]`);
  await eventually('the console shows the customer parked, 3 waiting', async () =>
    (await row.locator('td.waiting').textContent({ timeout: 1000 }).catch(() => '')) === '3');
  await screenshot('customers');

  // The blocker's page: its body and the trail that parked it.
  await row.locator(`a:text-is("${blocker}")`).click();
  await page.waitForSelector('#event-status');
  assert.equal(await page.textContent('#event-status'), 'DEAD');
  assert.match(await page.textContent('pre.body'), /"note": "the destination refuses this one"/);
  await screenshot('event');
  await page.goBack();

  dest.refuse.delete(blocker);
  await page.locator(`table.parked tr[data-customer="${customer}"] button:text("Unpark")`).click();
  await page.waitForSelector('.flash');
  assert.match(await page.textContent('.flash'), new RegExp(`Unparking ${customer}`));
  // The page refreshes itself: the customer leaves every table once drained.
  await eventually('the customer is no longer in trouble', async () =>
    (await page.locator(`tr[data-customer="${customer}"]`).count()) === 0);
  // An HTTP destination may see an event again (at least once): first deliveries count.
  const firsts = [...new Set(dest.delivered.filter((id) => id === blocker || waiting.includes(id)))];
  assert.deepEqual(firsts, [blocker, ...waiting],
    'the blocker first, then the waiting events in the order they came');
  const trail = (await dev.admin(`/admin/events/generic/${blocker}`)).trail;
  const replayed = trail.find((r) => r.action === 'REPLAYED');
  const who = (await page.textContent('header .who')).trim();
  assert.equal(replayed?.reason, `admin API: ${who}`, 'the replay is audited under the operator\'s session');
});

test('skip a blocker after a confirmation that names it', async () => {
  const customer = `cus_skip_${run}`;
  const blocker = `evt_skipped_${run}`;
  const after1 = `evt_after_${run}`;
  dest.refuse.add(blocker);
  await dev.send(blocker, customer);
  await eventually('the blocker is DEAD', async () => (await dev.admin(`/admin/events?event_id=${blocker}`)).events[0]?.status === 'DEAD');
  await dev.send(after1, customer);
  await page.goto(`${dev.adminURL}/console/customers`);
  const row = page.locator(`table.parked tr[data-customer="${customer}"]`);
  await eventually('the customer is parked with one waiting', async () =>
    (await row.locator('td.waiting').textContent({ timeout: 1000 }).catch(() => '')) === '1');
  await row.locator('a:text("Skip blocker")').click();
  await page.waitForSelector('.confirm');
  assert.equal(await page.textContent('.confirm strong.blocker'), blocker);
  await screenshot('skip');
  await page.click('.confirm button[type=submit]');
  await eventually('the waiting event is delivered', async () => dest.delivered.includes(after1));
  assert.ok(!dest.delivered.includes(blocker), 'the skipped event was not delivered');
  assert.equal((await dev.admin(`/admin/events?event_id=${blocker}`)).events[0].status, 'DEAD');
});

test('replay a dead-lettered event and watch it become PROCESSED', async () => {
  const id = `evt_dead_${run}`;
  dest.refuse.add(id);
  await dev.send(id, `cus_dead_${run}`, { attempt: 'first' });
  await eventually('the event is DEAD', async () => (await dev.admin(`/admin/events?event_id=${id}`)).events[0]?.status === 'DEAD');
  await page.goto(`${dev.adminURL}/console/events?status=DEAD&event_id=${id}`);
  await page.click(`a.event-link:text-is("${id}")`);
  await page.waitForSelector('#event-status');
  assert.equal(await page.textContent('#event-status'), 'DEAD');
  dest.refuse.delete(id);
  await page.click(`form.replay button[type=submit]`);
  await page.waitForSelector('.flash');
  assert.match(await page.textContent('.flash'), new RegExp(`Replaying ${id}`));
  // The page refreshes itself while the event can still change.
  await page.waitForFunction(() => document.querySelector('#event-status')?.textContent === 'PROCESSED', null, { timeout: 60_000 });
  const actions = await page.locator('ol.timeline .action').allTextContents();
  const dead = actions.indexOf('DEAD_LETTERED'), replayed = actions.indexOf('REPLAYED');
  assert.ok(dead >= 0 && replayed > dead && actions.lastIndexOf('PROCESSED') > replayed, actions.join(' '));
  assert.ok(dest.delivered.includes(id));
});

test('bulk replay: a preview, a confirmation naming the events, then DEAD events become PROCESSED', async () => {
  const since = new Date(Date.now() - 1000).toISOString().slice(0, 19); // UTC, as the form reads it
  const ids = [`evt_bulk1_${run}`, `evt_bulk2_${run}`];
  for (const [i, id] of ids.entries()) {
    dest.refuse.add(id);
    await dev.send(id, `cus_bulk${i}_${run}`, { bulk: i });
  }
  for (const id of ids) {
    await eventually(`${id} is DEAD`, async () => (await dev.admin(`/admin/events?event_id=${id}`)).events[0]?.status === 'DEAD');
  }
  await page.click('nav >> text=Replay');
  await page.waitForSelector('form.search');
  await page.selectOption('select[name=status]', 'DEAD');
  await page.fill('input[name=since]', since);
  await page.click('form.search button[type=submit]');
  await page.waitForSelector('.confirm.bulk');
  assert.equal(await page.textContent('.confirm .will-replay'), '2');
  const named = await page.locator('table.bulk-preview tr[data-event]').evaluateAll((rows) => rows.map((r) => r.dataset.event));
  assert.deepEqual(named.sort(), [...ids].sort(), 'the confirmation names exactly the events to replay');
  await screenshot('replay-confirm');
  for (const id of ids) dest.refuse.delete(id);
  await page.click('.confirm button[type=submit]');
  await page.waitForURL(/\/console\/replay\/batches\/\d+$/);
  assert.equal(await page.textContent('.summary .replayed'), '2');
  // The page refreshes itself until every replayed event is PROCESSED or DEAD.
  await page.waitForFunction(() => document.querySelector('.count-processed')?.textContent === '2', null, { timeout: 60_000 });
  await screenshot('replay-outcome');
  for (const id of ids) {
    assert.ok(dest.delivered.includes(id), `${id} delivered`);
    const trail = (await dev.admin(`/admin/events/generic/${id}`)).trail;
    const who = (await page.textContent('header .who')).trim();
    assert.equal(trail.find((r) => r.action === 'REPLAYED')?.reason, `admin API: ${who}`);
  }
});

test('the live tail shows a new decision as it is made, filtered by customer', async () => {
  const customer = `cus_tail_${run}`;
  const id = `evt_tail_${run}`;
  await page.click('nav >> text=Live audit tail');
  await page.waitForSelector('form.search');
  await page.fill('input[name=customer_id]', customer);
  await page.click('form.search button[type=submit]');
  await page.waitForSelector('#tail-state[data-state=live]');
  await dev.send(`evt_tail_other_${run}`, `cus_tail_other_${run}`);
  await dev.send(id, customer, { tail: true });
  const row = (action) => page.locator(`#tail tr[data-event="${id}"][data-action="${action}"]`);
  await row('ACCEPTED').waitFor();
  await row('PROCESSED').waitFor({ timeout: 60_000 });
  assert.equal(await page.locator(`#tail tr[data-event="evt_tail_other_${run}"]`).count(), 0, 'another customer\'s decision is not shown');
  assert.equal(await row('ACCEPTED').locator('td').nth(4).textContent(), customer);
  await screenshot('tail');
});

test('the overview shows the last hour\'s counts, the consumer lag and readiness, and refreshes itself', async () => {
  await page.click('nav >> text=Overview');
  await page.waitForSelector('#overview');
  assert.equal((await page.textContent('.ready-postgres .value')).trim(), 'ok');
  assert.equal((await page.textContent('.ready-kafka .value')).trim(), 'ok');
  // The process samples its counters every 10 s, and the page refreshes
  // itself every 5 s: the events the tests above sent show up.
  const total = async (name) => Number(await page.locator(`tr.rate-${name} td.total`).textContent({ timeout: 1000 }).catch(() => '0'));
  await eventually('the accepted and processed events are counted', async () => (await total('accepted')) >= 10 && (await total('processed')) >= 10, 60_000);
  assert.ok((await total('dead')) >= 1, 'the dead-lettered events are counted');
  assert.equal(await page.locator('tr.rate-accepted svg rect').count(), 60);
  const lags = await page.locator('table.lag td.lag').allTextContents();
  assert.ok(lags.length >= 1 && lags.every((l) => /^\d+$/.test(l)), `lag per partition: ${lags}`);
  await screenshot('overview');
});

test('a request without the session or without the CSRF token is refused', async () => {
  const errorsBefore = pageErrors.length;
  const form = { customer_id: 'nobody', csrf: 'forged' };
  // Without a session (a new context has no cookie).
  const anonymous = await browser.newContext();
  const p = await anonymous.newPage();
  await p.goto(`${dev.adminURL}/console/login`);
  const noSession = await p.evaluate(async (f) => (await fetch('/console/customers/unpark', { method: 'POST', body: new URLSearchParams(f) })).status, form);
  assert.equal(noSession, 401);
  await anonymous.close();
  // With the session but a forged CSRF token, from the console's own origin.
  const noCSRF = await page.evaluate(async (f) => (await fetch('/console/customers/unpark', { method: 'POST', body: new URLSearchParams(f) })).status, form);
  assert.equal(noCSRF, 403);
  pageErrors.splice(errorsBefore); // the browser logs the refusal as an error
});

test('search page; nothing loaded from another host; no script error', async () => {
  await page.goto(`${dev.adminURL}/console/events?source=generic`);
  await page.waitForSelector('a.event-link');
  await screenshot('events');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${dev.adminURL}/console/customers`);
  await screenshot('phone-customers');
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.deepEqual(foreign, [], 'every request went to the console\'s own origin');
  assert.deepEqual(pageErrors, [], 'no script error, no CSP violation');
});
