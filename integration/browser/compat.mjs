// compat.mjs drives the pages of compat/ (Ant Media's WebRTCAdaptor and
// Flashphoner's Web SDK, unmodified, from node_modules) in a real Chromium
// for integration/compat_browser_test.go. The Go test starts rtmrec,
// Chromium and the server of these pages; this script connects to Chromium
// over the DevTools protocol, runs one scenario, and prints one JSON object
// with what the pages saw.
//
//   node compat.mjs <scenario> '<json config>'
//   config: {cdp, pages: "http://127.0.0.1:P", ws: "ws://127.0.0.1:R", relay: "ws://127.0.0.1:P/relay",
//            sessions: "http://127.0.0.1:R/dev/sessions", stream, seconds}
//
// Scenarios: ams and wcs (a page publishes for `seconds`, a second page
// plays it meanwhile), ams-retry (the publish goes through a relay that
// holds its first offer past the SDK's 3 s patience).

import { chromium } from 'playwright-core';

const [, , name, rawConfig] = process.argv;
const cfg = JSON.parse(rawConfig ?? '{}');
const out = { scenario: name, ok: false, console: [], timeline: [] };
const t0 = Date.now();
const mark = (what) => out.timeline.push(`${what} ${Date.now() - t0}`);

// Per SDK: the page and the names of its events.
const sdks = {
  ams: { page: 'ams.html', path: '/live/websocket', started: 'publish_started', finished: 'publish_finished', playing: 'play_started', stopped: 'play_finished' },
  wcs: { page: 'wcs.html', path: '/wcs', started: 'PUBLISHING', finished: 'UNPUBLISHED', playing: 'PLAYING', stopped: 'STOPPED' },
};

async function openPage(browser, sdk, mode, ws) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const label = `${sdk.page} ${mode}`;
  page.on('console', (m) => {
    if (m.type() === 'error') out.console.push(`${label}: ${m.text()}`);
  });
  page.on('pageerror', (err) => out.console.push(`${label}: pageerror: ${err.message}`));
  await page.goto(`${cfg.pages}/compat/${sdk.page}?mode=${mode}&ws=${encodeURIComponent(ws)}`);
  return page;
}

const state = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.state)));

// waitEvent waits for the page's SDK event and returns it; it fails fast
// with the page's state when the SDK reported an error instead.
async function waitEvent(page, event, timeout = 20000) {
  try {
    await page.waitForFunction((e) => window.state.events.some((x) => x.name === e) || window.state.errors.length > 0,
      event, { timeout, polling: 20 });
  } catch (err) {
    throw new Error(`waiting for ${event}: ${err.message.split('\n')[0]}; page state: ${JSON.stringify(await state(page))}`);
  }
  const st = await state(page);
  const ev = st.events.find((x) => x.name === event);
  if (!ev) throw new Error(`waiting for ${event}, the page saw errors: ${JSON.stringify(st)}`);
  return ev;
}

// publish begins a publish and waits for the SDK's success event.
async function publish(browser, sdk, ws) {
  mark('open publisher');
  const page = await openPage(browser, sdk, 'publish', ws);
  mark('publisher loaded');
  await page.evaluate((id) => window.begin(id), cfg.stream);
  const started = await waitEvent(page, sdk.started);
  mark('published');
  const st = await state(page);
  return { page, started, result: { publish_ms: started.at - st.begun } };
}

// stopPublish stops once `seconds` have passed since the success event,
// and waits for the finished event.
async function stopPublish(page, sdk, started, result) {
  await page.waitForFunction((until) => performance.now() >= until, started.at + cfg.seconds * 1000,
    { timeout: cfg.seconds * 1000 + 30000, polling: 10 });
  const stopAt = await page.evaluate(() => { window.end(); return performance.now(); });
  mark('stopping publish');
  const finished = await waitEvent(page, sdk.finished);
  mark('publish finished');
  const st = await state(page);
  Object.assign(result, { record_ms: Math.round(stopAt - started.at), stop_to_finished_ms: Math.round(finished.at - stopAt), events: st.events, errors: st.errors, record_name: st.recordName });
  await page.context().close();
}

// play plays the stream in a second page until it has decoded frames and
// its time advances, then stops it.
async function play(browser, sdk, ws) {
  mark('open player');
  const page = await openPage(browser, sdk, 'play', ws);
  mark('player loaded');
  await page.evaluate((id) => window.begin(id), cfg.stream);
  await waitEvent(page, sdk.playing);
  try {
    await page.waitForFunction(() => {
      const f = window.state.frames;
      return f && f.count >= 20 && f.width > 0 && f.mediaTime > 0.5;
    }, undefined, { timeout: 15000, polling: 20 });
  } catch (err) {
    throw new Error(`waiting for decoded frames: ${err.message.split('\n')[0]}; page state: ${JSON.stringify(await state(page))}`);
  }
  mark('player frames');
  const first = await state(page);
  const stopAt = await page.evaluate(() => { window.end(); return performance.now(); });
  const stopped = await waitEvent(page, sdk.stopped);
  const st = await state(page);
  await page.context().close();
  return {
    first_frame_ms: first.frames.first - first.begun,
    frames: first.frames, events: st.events, errors: st.errors,
    stop_to_finished_ms: Math.round(stopped.at - stopAt),
  };
}

// listed finds the stream in the dev console's listing of sessions, once
// it records and has received both tracks (or after 5 s, as it is).
async function listed() {
  let found = null;
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    const list = await (await fetch(cfg.sessions)).json();
    found = list.find((s) => s.session_id === cfg.stream) ?? null;
    if (found?.recording_id && found.tracks?.filter((t) => t.packets > 0).length === 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return found;
}

const scenarios = {
  async ams(browser) { await publishAndPlay(browser, sdks.ams); },
  async wcs(browser) { await publishAndPlay(browser, sdks.wcs); },

  // The relay holds the first offer past the SDK's 3 s: the SDK stops and
  // publishes again; that second publish is the one recorded.
  async 'ams-retry'(browser) {
    const sdk = sdks.ams;
    const { page, started, result } = await publish(browser, sdk, `${cfg.relay}${sdk.path}`);
    await stopPublish(page, sdk, started, result);
    out.publish = result;
  },
};

async function publishAndPlay(browser, sdk) {
  const ws = `${cfg.ws}${sdk.path}`;
  const { page, started, result } = await publish(browser, sdk, ws);
  out.listed = await listed();
  out.play = await play(browser, sdk, ws);
  await stopPublish(page, sdk, started, result);
  out.publish = result;
}

let browser;
try {
  if (!scenarios[name]) throw new Error(`unknown scenario ${name}; have ${Object.keys(scenarios).join(', ')}`);
  browser = await chromium.connectOverCDP(cfg.cdp);
  mark('connected');
  await scenarios[name](browser);
  out.ok = true;
} catch (err) {
  out.error = String(err?.stack ?? err);
} finally {
  process.stdout.write(JSON.stringify(out) + '\n');
  await browser?.close().catch(() => {});
  process.exit(out.ok ? 0 : 1);
}
