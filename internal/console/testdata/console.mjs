// The console in a real browser (Debian's chromium through playwright-core), as an operator
// uses it, JavaScript off: log in (a wrong token refused first), find a lab by a filter, open
// its timeline, retry the failed action of a lab that needs an operator and see it recorded,
// see the cost chart and the deploys; screenshots at a desktop's and a phone's width; then
// axe-core on every page at both widths (JavaScript on, only for axe), failing on serious or
// critical violations. TestConsoleInBrowser runs it against a real `labplane serve`.
//
// Environment: CONSOLE_URL, OPS_TOKEN, READ_TOKEN, LAB_A (course COURSE_A), LAB_B (needs an
// operator: its suspend failed), SHOTS (the screenshots' directory), CHROMIUM (the browser),
// NODE_MODULES (where playwright-core and axe-core are installed). Exit 1 on the first failure.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('CONSOLE_URL');
const shots = env('SHOTS');
const require = createRequire(path.join(env('NODE_MODULES'), 'x.js'));
const { chromium } = require('playwright-core');
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const [labA, labB, courseA] = [env('LAB_A'), env('LAB_B'), env('COURSE_A')];

const log = (step, detail = '') => console.log(`ok: ${step}${detail ? ': ' + detail : ''}`);
class Failure extends Error {}
const expect = (cond, what) => {
  if (!cond) throw new Failure(what);
};
const desktop = { width: 1280, height: 900 };
const phone = { width: 390, height: 844 };

const browser = await chromium.launch({ executablePath: env('CHROMIUM') });
let page;
try {
  // the operator's own browser: no JavaScript at all
  const ctx = await browser.newContext({ javaScriptEnabled: false, viewport: desktop });
  page = await ctx.newPage();
  const shot = async (name) => page.screenshot({ path: path.join(shots, `desktop-${name}.png`), fullPage: true });
  const submit = async (button) => {
    const [resp] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: button }).click()]);
    return resp;
  };

  // no session: the login form, which refuses a wrong token
  await page.goto(base + '/console/');
  expect(new URL(page.url()).pathname === '/console/login', `without a session, /console/ went to ${page.url()}`);
  await shot('login');
  await page.getByLabel('API token').fill('lp_' + 'A'.repeat(43));
  let resp = await submit('Log in');
  expect(resp.status() === 401, `a wrong token: status ${resp.status()}`);
  expect((await page.getByRole('alert').innerText()).includes('not valid'), 'a wrong token: no "not valid" message');
  log('a wrong token is refused', `${resp.status()}`);

  // a read token sees the labs that need an operator, and no button
  await page.getByLabel('API token').fill(env('READ_TOKEN'));
  await submit('Log in');
  await page.getByRole('link', { name: /Needs an operator/ }).click();
  expect((await page.locator('main').innerText()).includes(labB), 'read token: the lab that needs an operator is not listed');
  expect((await page.getByRole('link', { name: /Retry/ }).count()) === 0, 'read token: a Retry button is shown');
  await submit('Log out');
  expect((await page.getByRole('status').innerText()).includes('logged out'), 'after the logout: no "logged out"');
  log('a read token sees no action button');

  // the operator logs in and finds lab A by its course
  await page.getByLabel('API token').fill(env('OPS_TOKEN'));
  resp = await submit('Log in');
  expect(new URL(page.url()).pathname === '/console/', `after the login: ${page.url()}`);
  await page.getByLabel('Course').fill(courseA);
  await submit('Filter');
  const listed = await page.locator('section[aria-labelledby="list-h"] tbody a').allInnerTexts();
  expect(listed.length === 1 && listed[0] === labA, `the filter by course ${courseA} lists ${JSON.stringify(listed)}`);
  await shot('labs-filtered');
  log('a lab found by its course', labA);

  // its timeline: the launch, with the cloud's request id; its outputs only when asked for
  await page.getByRole('link', { name: labA }).click();
  let rows = await page.locator('table.timeline tbody tr').allInnerTexts();
  expect(rows.some((r) => /\tlaunched\t/.test(r) && /req-/.test(r)), `the timeline has no launched event with a request id:\n${rows.join('\n')}`);
  expect(!(await page.locator('main').innerText()).includes('guacamole_password'), 'the lab page shows its outputs');
  await shot('lab');
  await page.getByRole('link', { name: 'Show the outputs' }).click();
  expect((await page.locator('main').innerText()).includes('guacamole_password'), 'the outputs page has no guacamole_password');
  log('the lab timeline, outputs on their own page', `${rows.length} events`);

  // the lab that needs an operator: retry its suspend, confirmed, and see it recorded
  await page.getByRole('link', { name: /Needs an operator/ }).click();
  await shot('attention');
  await page.locator('tr', { hasText: labB }).getByRole('link', { name: 'Retry the suspend' }).click();
  expect(new URL(page.url()).pathname === `/console/labs/${labB}/confirm`, `the retry went to ${page.url()}`);
  await shot('confirm');
  await submit(`Yes, suspend lab ${labB}`);
  expect(new URL(page.url()).pathname === `/console/labs/${labB}`, `after the confirmation: ${page.url()}`);
  expect((await page.getByRole('status').innerText()).includes('You asked for a suspend'), 'no word of the request');
  const deadline = Date.now() + 120_000;
  for (;;) {
    rows = await page.locator('table.timeline tbody tr').allInnerTexts();
    if (rows.some((r) => /\tapi:ops\tsuspend\t.*→ suspended/.test(r))) break;
    expect(Date.now() < deadline, `the retried suspend is not recorded after 2 minutes:\n${rows.join('\n')}`);
    await new Promise((r) => setTimeout(r, 1000));
    await page.reload();
  }
  await shot('lab-retried');
  log('the retry is recorded as the operator\'s', rows.find((r) => /api:ops\tsuspend\t/.test(r)).replace(/\t/g, ' | '));

  // the cost chart and table, the deploys
  await page.getByRole('link', { name: 'Cost' }).click();
  const chart = page.locator('figure.chart svg');
  expect((await chart.count()) === 1, 'no chart on the cost page');
  expect((await chart.locator('title').textContent()).includes('Lab-hours running vs used'), 'the chart has no title');
  expect((await page.locator('table').first().innerText()).includes(courseA), `the cost table lacks ${courseA}`);
  await shot('cost');
  log('the cost chart');
  await page.getByRole('link', { name: 'Clouds' }).click();
  expect((await page.locator('main tbody').innerText()).includes('local-a'), 'the clouds page lacks local-a');
  expect((await page.getByRole('link', { name: 'Drain' }).count()) === 1, 'the clouds page has no Drain button for local-a');
  await shot('clouds');
  await page.getByRole('link', { name: 'Deploys' }).click();
  expect((await page.locator('main').innerText()).includes('lms-1'), 'the deploys page lacks the recap of lms-1');
  await shot('deploys');
  log('the clouds, the deploys and promotions');

  // the same pages at a phone's width, and axe on each at both widths (JavaScript on for it)
  const state = await ctx.storageState();
  const pages = { labs: '/console/', lab: `/console/labs/${labB}`, attention: '/console/attention', confirm: `/console/labs/${labA}/confirm?action=delete`,
    clouds: '/console/clouds', cost: '/console/cost', deploys: '/console/deploys' };
  const small = await browser.newContext({ javaScriptEnabled: false, viewport: phone, isMobile: true, storageState: state });
  const p2 = await small.newPage();
  for (const [name, url] of Object.entries(pages)) {
    await p2.goto(base + url);
    await p2.screenshot({ path: path.join(shots, `phone-${name}.png`), fullPage: true });
  }
  log('phone-width screenshots', Object.keys(pages).join(', '));
  const checker = await browser.newContext({ bypassCSP: true, storageState: state });
  const a = await checker.newPage();
  let serious = [];
  for (const viewport of [desktop, phone]) {
    await a.setViewportSize(viewport);
    for (const [name, url] of Object.entries({ ...pages, login: '/console/login?out=1' })) {
      await a.goto(base + url);
      const overflow = await a.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow <= 0, `${name} at ${viewport.width}px scrolls sideways by ${overflow}px (only tables may)`);
      await a.addScriptTag({ content: axeSource });
      const res = await a.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
      for (const v of res.violations) {
        const line = `${name} at ${viewport.width}px: ${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`;
        if (v.impact === 'serious' || v.impact === 'critical') serious.push(line);
        else console.log('axe, minor: ' + line);
      }
    }
  }
  expect(serious.length === 0, `axe-core found serious or critical violations:\n${serious.join('\n')}`);
  log('axe-core: no serious or critical violation', `${Object.keys(pages).length + 1} pages at 2 widths`);

  // logging out ends the session
  await submit('Log out');
  await page.goto(base + '/console/');
  expect(new URL(page.url()).pathname === '/console/login', 'after the logout the console still answers');
  log('logged out');
} catch (err) {
  console.log(`FAILED: ${err instanceof Failure ? err.message : err.stack}`);
  if (page) {
    await page.screenshot({ path: path.join(shots, 'desktop-failure.png'), fullPage: true }).catch(() => {});
    console.log(`at ${page.url()}`);
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
