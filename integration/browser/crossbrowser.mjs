// crossbrowser.mjs drives rtmrec's dev console in Firefox and Chromium at
// once, for the Firefox and H.264 scenarios of integration/browser_test.go.
// The Go test starts the server and both browsers (so it owns every process
// and kills them on every exit path); this script connects with
// puppeteer-core (Firefox over WebDriver BiDi, Chromium over the DevTools
// protocol), clicks through the pages like people would, and prints one
// JSON object on stdout. The Go test checks the recorded files.
//
//   node crossbrowser.mjs firefox-profile DIR
//     writes a Firefox profile: puppeteer's automation preferences plus fake
//     camera and microphone, no permission prompts, ICE over loopback.
//   node crossbrowser.mjs run '<json config>'
//     config: {bidi: "ws://...", cdp: "ws://...", base: "http://127.0.0.1:PORT",
//              lanes: [["firefox-record"], ["firefox-audio", ...]], seconds: 20}
//     Lanes run concurrently, the scenarios of a lane one after another.
//     Prints {ok, error, connect_ms: {firefox, chromium}, results: [{name, ok, error, ...}]}.
//
// Scenarios: firefox-record (a Firefox agent records audio+video for
// `seconds`), firefox-audio (a Firefox agent records audio only),
// cross-supervise (a Chromium agent watched by a Firefox supervisor and a
// Firefox agent watched by a Chromium supervisor, at once), chromium-h264 (a
// Chromium agent that prefers H.264 records).

import puppeteer from 'puppeteer-core';
import { Browser, createProfile } from '@puppeteer/browsers';

const [, , command, arg] = process.argv;

// Firefox's fake devices, no prompts, and ICE candidates on loopback too.
const firefoxPrefs = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.loopback': true,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // What puppeteer.launch sets for Firefox: one content process, so that
  // input reaches the page's frames.
  'fission.webContentIsolationStrategy': 0,
};

// A browser context per page: separate storage, like people on two machines.
async function openPage(browser, label, file, out) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1200, height: 820 });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') out.console.push(`${label}: ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (err) => out.console.push(`${label}: pageerror: ${err.message}`));
  await page.goto(`${cfg.base}/dev/${file}`);
  return page;
}

// phases returns mark(name): out.phases_ms[name] = ms since phases() was called.
function phases(out) {
  const t0 = Date.now();
  out.phases_ms = {};
  return (name) => { out.phases_ms[name] = Date.now() - t0; };
}

const pageState = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.consoleState)));

// Fails fast with the page's own state when something went wrong.
async function waitState(page, what, fn, arg, timeout = 20000) {
  try {
    await page.waitForFunction(fn, { timeout, polling: 50 }, arg);
  } catch (err) {
    const st = await pageState(page).catch(() => ({}));
    throw new Error(`waiting for ${what}: ${err.message.split('\n')[0]}; page state: ${JSON.stringify({ ...st, recordings: undefined })}`);
  }
}

async function startSession(page, { cam = true, videoCodec = '' } = {}) {
  await page.$eval('#use-mic', (el) => { el.checked = true; });
  await page.$eval('#use-cam', (el, v) => { el.checked = v; }, cam);
  await page.$eval('#use-screen', (el) => { el.checked = false; });
  if (videoCodec) await page.select('#video-codec', videoCodec);
  await page.click('#start-session');
  await waitState(page, 'CONNECTED', () => window.consoleState.sessionState === 'CONNECTED' || window.consoleState.errors.length > 0);
  const st = await pageState(page);
  if (st.sessionState !== 'CONNECTED') throw new Error(`session failed: ${st.errors.join('; ')}`);
  return { session_id: st.sessionId, connect_ms: st.connectMs, timings: st.timings };
}

// Records from the Record click for ms (on the page's clock), then stops
// and waits until the upload is decided. The Stop click is timed inside the
// page, so that a slow automation round trip does not lengthen the call.
async function record(page, ms) {
  await page.click('#rec-start');
  await waitState(page, 'recording STARTED', () => window.consoleState.recordingState === 'STARTED');
  await page.evaluate((ms) => new Promise((resolve) => {
    const start = window.consoleState.recordings.at(-1).start_click;
    setTimeout(() => resolve(document.querySelector('#rec-stop').click()), start + ms - performance.now());
  }), ms);
  await waitState(page, 'recording STOPPED', () => ['STOPPED', 'FAILED'].includes(window.consoleState.recordings.at(-1).state), undefined, 60000);
  const r = (await pageState(page)).recordings.at(-1);
  r.record_ms = Math.round(r.stop_click - r.start_click);
  return r;
}

// Ends the agent's session with its Stop button; out gets how it ended
// and the errors the page showed.
async function endSession(page, out) {
  await page.click('#stop-session');
  await waitState(page, 'TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
  const st = await pageState(page);
  out.agent_cause = st.terminationCause;
  out.errors.push(...st.errors);
  await page.browserContext().close();
}

// A supervisor joins session id from its own page and waits until it hears
// and sees it.
async function supervise(browser, label, id, out) {
  const sup = await openPage(browser, label, 'supervisor.html', out);
  await sup.waitForSelector(`tr[data-session="${id}"] button.join:not([disabled])`, { timeout: 10000 });
  await sup.click(`tr[data-session="${id}"] button.join`);
  await waitState(sup, 'supervisor CONNECTED', () => window.consoleState.sessionState === 'CONNECTED');
  await waitState(sup, 'supervisor media', () => {
    const s = window.consoleState.stats;
    return s?.audio?.packetsReceived > 0 && s.video.some((v) => v.framesDecoded > 10);
  }, undefined, 20000);
  const st = await pageState(sup);
  const res = { browser: label, connect_ms: st.connectMs, stats: st.stats, errors: st.errors };
  await sup.click('#leave');
  await waitState(sup, 'supervisor TERMINATED', () => window.consoleState.terminationCause !== '');
  res.cause = (await pageState(sup)).terminationCause;
  await sup.browserContext().close();
  return res;
}

const scenarios = {
  // A Firefox agent records audio and video from right after CONNECTED,
  // through the resolution steps Firefox takes as its bandwidth estimate
  // grows (320x240, then 480x360 at about 9.5 s, 640x480 at about 19 s).
  async 'firefox-record'({ firefox }, out) {
    const mark = phases(out);
    const agent = await openPage(firefox, 'firefox agent', '', out);
    mark('page_opened');
    Object.assign(out, await startSession(agent));
    mark('connected');
    out.recording = await record(agent, (cfg.seconds ?? 20) * 1000);
    mark('recorded_and_uploaded');
    await endSession(agent, out);
    mark('ended');
  },

  // A Firefox agent without camera: the recording is Ogg.
  async 'firefox-audio'({ firefox }, out) {
    const agent = await openPage(firefox, 'firefox agent', '', out);
    Object.assign(out, await startSession(agent, { cam: false }));
    out.recording = await record(agent, 4000);
    await endSession(agent, out);
  },

  // Supervisors across browsers, both ways at once.
  async 'cross-supervise'({ firefox, chromium }, out) {
    const pair = async (agentBrowser, agentLabel, supBrowser, supLabel) => {
      const agent = await openPage(agentBrowser, agentLabel, '', out);
      const s = await startSession(agent);
      const sup = await supervise(supBrowser, supLabel, s.session_id, out);
      const res = { agent: agentLabel, connect_ms: s.connect_ms, supervisor: sup, errors: [] };
      await endSession(agent, res);
      return res;
    };
    out.pairs = await Promise.all([
      pair(chromium, 'chromium agent', firefox, 'firefox supervisor'),
      pair(firefox, 'firefox agent', chromium, 'chromium supervisor'),
    ]);
  },

  // A Chromium agent that prefers H.264: the console names the upload .mkv
  // and asks for Matroska.
  async 'chromium-h264'({ chromium }, out) {
    const agent = await openPage(chromium, 'chromium agent', '', out);
    Object.assign(out, await startSession(agent, { videoCodec: 'video/H264' }));
    out.recording = await record(agent, 5000);
    await endSession(agent, out);
  },
};

async function runScenario(browsers, name) {
  const out = { name, ok: false, console: [], errors: [] };
  const t0 = Date.now();
  try {
    if (!scenarios[name]) throw new Error(`unknown scenario ${name}; have ${Object.keys(scenarios).join(', ')}`);
    await scenarios[name](browsers, out);
    out.ok = true;
  } catch (err) {
    out.error = String(err?.stack ?? err);
  }
  out.wall_ms = Date.now() - t0;
  return out;
}

let cfg = {};
if (command === 'firefox-profile') {
  await createProfile(Browser.FIREFOX, { path: arg, preferences: firefoxPrefs });
  process.exit(0);
}
const result = { ok: false, results: [] };
const browsers = {};
try {
  if (command !== 'run') throw new Error(`unknown command ${command}: want firefox-profile or run`);
  cfg = JSON.parse(arg);
  const lanes = cfg.lanes ?? [];
  const need = new Set(lanes.flat().flatMap((n) => (n.startsWith('firefox') ? ['firefox'] : n.startsWith('chromium') ? ['chromium'] : ['firefox', 'chromium'])));
  const t0 = Date.now();
  if (need.has('firefox')) browsers.firefox = await puppeteer.connect({ browserWSEndpoint: `${cfg.bidi}/session`, protocol: 'webDriverBiDi' });
  const t1 = Date.now();
  if (need.has('chromium')) browsers.chromium = await puppeteer.connect({ browserWSEndpoint: cfg.cdp });
  result.connect_ms = { firefox: t1 - t0, chromium: Date.now() - t1 };
  const done = await Promise.all(lanes.map(async (lane) => {
    const outs = [];
    for (const name of lane) outs.push(await runScenario(browsers, name));
    return outs;
  }));
  result.results = done.flat();
  result.ok = true;
} catch (err) {
  result.error = String(err?.stack ?? err);
} finally {
  process.stdout.write(JSON.stringify(result) + '\n');
  // Disconnects; the Go test owns the browsers and closes them.
  for (const b of Object.values(browsers)) await b.disconnect().catch(() => {});
  process.exit(result.ok ? 0 : 1);
}
