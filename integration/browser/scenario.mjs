// scenario.mjs drives rtmrec's dev console in a real Chromium for
// integration/browser_test.go. The Go test starts the server and Chromium
// (so it owns both processes and kills them on every exit path); this script
// only connects to Chromium over the DevTools protocol, clicks through the
// pages like a person would, and prints one JSON object with what it saw on
// stdout. The Go test then checks the recorded files with ffprobe/ffmpeg.
//
//   node scenario.mjs <scenario> '<json config>'
//   config: {cdp: "ws://...", base: "http://127.0.0.1:PORT", shots: "dir", seconds: 10,
//            refusing_upload: "http://127.0.0.1:PORT/..." (failedupload)}
//
// Scenarios: record (audio+video, a supervisor joins), pause, screen (a
// screen share added mid-call), tabclose (the tab closes mid-recording),
// joinended (from the server's root, a supervisor joins a session that has
// just ended, then another), failedupload (an upload URL that refuses).

import { chromium } from 'playwright-core';
import path from 'node:path';

const [, , name, rawConfig] = process.argv;
const cfg = JSON.parse(rawConfig ?? '{}');
const out = { scenario: name, ok: false, console: [] };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function openPage(browser, file, path = `/dev/${file}`) {
  // A context per page: separate storage, like two people on two machines.
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 820 } });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') out.console.push(`${file}: ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (err) => out.console.push(`${file}: pageerror: ${err.message}`));
  await page.goto(cfg.base + path);
  return page;
}

// What the webhook panel shows: each row's session and signature check.
const webhookPanel = (page) => page.evaluate(() => [...document.querySelectorAll('#webhooks li')].map((li) => ({
  session_id: li.querySelector('.sid').textContent, type: li.querySelector('.type').textContent,
  signed: li.dataset.signed, label: li.querySelector('.sig').textContent,
})));

// The message log's rows: timestamp, direction, type, session.
const messageRows = (page) => page.evaluate(() => [...document.querySelectorAll('#log .msg')].map((m) => ({
  time: m.querySelector('time')?.textContent ?? '', out: m.classList.contains('out'),
  type: m.querySelector('.type').textContent, session_id: m.dataset.session ?? '', sum: m.querySelector('.sum').textContent,
})));

// What the page's message log shows of the signalling: trickle ICE both
// ways including the end-of-candidates, and sdp_update offers/answers.
const signalling = (page) => page.evaluate(() => {
  const rows = [...document.querySelectorAll('#log .msg')].map((m) => ({
    out: m.classList.contains('out'), type: m.querySelector('.type').textContent, sum: m.querySelector('.sum').textContent,
  }));
  const count = (out, type, pred = () => true) => rows.filter((r) => r.out === out && r.type === type && pred(r.sum)).length;
  const end = (s) => s === '(end of candidates)';
  return {
    candidates_sent: count(true, 'candidate', (s) => !end(s)),
    end_of_candidates_sent: count(true, 'candidate', end),
    candidates_received: count(false, 'candidate', (s) => !end(s)),
    end_of_candidates_received: count(false, 'candidate', end),
    sdp_update_offers_sent: count(true, 'sdp_update', (s) => s.startsWith('offer')),
    sdp_update_answers_received: count(false, 'sdp_update', (s) => s.startsWith('answer')),
    sdp_update_offers_received: count(false, 'sdp_update', (s) => s.startsWith('offer')),
    sdp_update_answers_sent: count(true, 'sdp_update', (s) => s.startsWith('answer')),
  };
});

const pageState = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.consoleState)));

// Fails fast with the page's own error box when something went wrong.
async function waitState(page, what, fn, arg, timeout = 20000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 20 });
  } catch (err) {
    const st = await pageState(page).catch(() => ({}));
    throw new Error(`waiting for ${what}: ${err.message.split('\n')[0]}; page state: ${JSON.stringify({ ...st, recordings: undefined })}`);
  }
}

async function startSession(page, { mic = true, cam = true, screen = false } = {}) {
  await page.setChecked('#use-mic', mic);
  await page.setChecked('#use-cam', cam);
  await page.setChecked('#use-screen', screen);
  await page.click('#start-session');
  await waitState(page, 'CONNECTED', () => window.consoleState.sessionState === 'CONNECTED');
  const st = await pageState(page);
  return { session_id: st.sessionId, connect_ms: st.connectMs, timings: st.timings };
}

async function startRecording(page) {
  await page.click('#rec-start');
  await waitState(page, 'recording STARTED', () => window.consoleState.recordingState === 'STARTED');
}

// Waits until ms have passed since the Record click, on the page's clock.
async function recordUntil(page, ms) {
  await waitState(page, `${ms} ms of recording`, (ms) => performance.now() - window.consoleState.recordings.at(-1).start_click >= ms, ms, ms + 30000);
}

async function stopRecording(page) {
  await page.click('#rec-stop');
  await waitState(page, 'recording STOPPED', () => ['STOPPED', 'FAILED'].includes(window.consoleState.recordings.at(-1).state), undefined, 60000);
  return lastRecording(page);
}

async function lastRecording(page) {
  const r = (await pageState(page)).recordings.at(-1);
  if (r.stop_click) r.record_ms = Math.round(r.stop_click - r.start_click);
  for (const p of r.pauses ?? []) if (p.resume_click) p.pause_ms = Math.round(p.resume_click - p.pause_click);
  return r;
}

const scenarios = {
  // 10 s of microphone (the tone file) and camera; a supervisor joins
  // from another context, hears and sees it, and leaves; both pages are
  // photographed.
  async record(browser) {
    const agent = await openPage(browser, '');
    Object.assign(out, await startSession(agent));
    await startRecording(agent);

    const sup = await openPage(browser, 'supervisor.html');
    const join = `tr[data-session="${out.session_id}"] button.join`;
    await sup.click(join, { timeout: 10000 });
    await waitState(sup, 'supervisor CONNECTED', () => window.consoleState.sessionState === 'CONNECTED');
    await waitState(sup, 'supervisor media', () => {
      const s = window.consoleState.stats;
      return s?.audio?.packetsReceived > 0 && s.audio.audioLevel > 0 && s.video.some((v) => v.framesDecoded > 0);
    }, undefined, 15000);
    // A little more video so the screenshot shows a picture, not a first frame.
    await sleep(1500);
    const supState = await pageState(sup);
    out.supervisor = { connect_ms: supState.connectMs, stats: supState.stats, errors: supState.errors };
    await sup.screenshot({ path: path.join(cfg.shots, 'supervisor.png') });
    await agent.screenshot({ path: path.join(cfg.shots, 'agent-recording.png') });

    // The supervisor leaves mid-recording; the agent's recording goes on.
    await sup.click('#leave');
    await waitState(sup, 'supervisor TERMINATED', () => window.consoleState.terminationCause !== '');
    out.supervisor.cause = (await pageState(sup)).terminationCause;
    await sup.context().close();

    await recordUntil(agent, (cfg.seconds ?? 10) * 1000);
    out.recording = await stopRecording(agent);
    out.signalling = await signalling(agent);

    // The recording plays back in the page, from the dev upload sink.
    await waitState(agent, 'playable recording in the list', (name) => {
      const li = [...document.querySelectorAll('#recordings li')].find((l) => l.textContent.includes(name));
      const v = li?.querySelector('video');
      return v && v.readyState >= 1 && v.duration > 1;
    }, out.recording.upload_name, 15000);
    out.playback_duration_s = await agent.evaluate((name) => {
      const li = [...document.querySelectorAll('#recordings li')].find((l) => l.textContent.includes(name));
      return li.querySelector('video').duration;
    }, out.recording.upload_name);
    await agent.screenshot({ path: path.join(cfg.shots, 'agent-recordings.png') });

    await agent.click('#stop-session');
    await waitState(agent, 'agent TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
    out.agent_cause = (await pageState(agent)).terminationCause;
    out.errors = (await pageState(agent)).errors;
    // Wait for the last webhook (TERMINATED) before reading the panel.
    await waitState(agent, 'TERMINATED webhook', () => [...document.querySelectorAll('#webhooks li')]
      .some((li) => li.textContent.includes('TERMINATED')), undefined, 10000);
    out.webhooks = await webhookPanel(agent);
    out.messages = await messageRows(agent);
    await agent.context().close();
  },

  // Record 2 s, pause 3 s, record 2 s more (pause_mode silence).
  async pause(browser) {
    const agent = await openPage(browser, '');
    Object.assign(out, await startSession(agent));
    await startRecording(agent);
    await recordUntil(agent, 2000);
    await agent.click('#rec-pause');
    await waitState(agent, 'PAUSED', () => window.consoleState.recordingState === 'PAUSED');
    await sleep(3000);
    await agent.click('#rec-resume');
    await waitState(agent, 'RESUMED', () => window.consoleState.recordingState === 'RESUMED');
    await recordUntil(agent, 7000);
    out.recording = await stopRecording(agent);
    await agent.click('#stop-session');
    await waitState(agent, 'TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
    out.errors = (await pageState(agent)).errors;
    await agent.context().close();
  },

  // A screen share added mid-call: renegotiation with an sdp_update offer.
  // A supervisor watching gets it too, and is ended with the session.
  async screen(browser) {
    const agent = await openPage(browser, '');
    Object.assign(out, await startSession(agent));
    await startRecording(agent);
    // A supervisor watches: the screen reaches it through a server-sent
    // sdp_update offer that its page answers.
    const sup = await openPage(browser, 'supervisor.html');
    await sup.click(`tr[data-session="${out.session_id}"] button.join`, { timeout: 10000 });
    await waitState(sup, 'supervisor CONNECTED', () => window.consoleState.sessionState === 'CONNECTED');
    await recordUntil(agent, 1500);
    await agent.click('#share-screen');
    // The server answers the renegotiation and receives the new track.
    await waitState(agent, 'screen track sent', () => {
      const s = window.consoleState;
      return s.errors.length > 0 || document.querySelectorAll('#previews figure').length === 2;
    });
    const sid = out.session_id;
    const deadline = Date.now() + 15000;
    for (;;) {
      const list = await (await fetch(`${cfg.base}/dev/sessions`)).json();
      const s = list.find((x) => x.session_id === sid);
      const videos = (s?.tracks ?? []).filter((t) => t.kind === 'video' && t.packets > 0).length;
      if (videos >= 2) break;
      if (Date.now() > deadline) throw new Error(`the server never received the screen track: ${JSON.stringify(s)}`);
      await sleep(100);
    }
    await waitState(sup, 'supervisor decoding two videos', () => {
      const v = window.consoleState.stats?.video ?? [];
      return v.filter((x) => x.framesDecoded > 0).length >= 2;
    }, undefined, 15000);
    const supState = await pageState(sup);
    out.supervisor = { connect_ms: supState.connectMs, stats: supState.stats, errors: supState.errors, signalling: await signalling(sup) };
    await sup.screenshot({ path: path.join(cfg.shots, 'supervisor-screen.png') });
    await recordUntil(agent, 5000);
    out.recording = await stopRecording(agent);
    out.signalling = await signalling(agent);
    await agent.screenshot({ path: path.join(cfg.shots, 'agent-screen.png') });

    // In-page playback shows both videos (camera and screen) and plays them
    // together.
    const li = `#recordings li[data-name="${out.recording.upload_name}"]`;
    await waitState(agent, 'two videos in the recording\'s player', (li) => document.querySelectorAll(`${li} video`).length === 2 &&
      [...document.querySelectorAll(`${li} video`)].every((v) => v.readyState >= 1), li, 20000);
    await agent.evaluate((li) => document.querySelector(`${li} video`).play(), li);
    await waitState(agent, 'both videos playing', (li) => [...document.querySelectorAll(`${li} video`)]
      .every((v) => v.currentTime > 1 && v.getVideoPlaybackQuality().totalVideoFrames > 2), li, 20000);
    out.playback = await agent.evaluate((li) => [...document.querySelectorAll(`${li} video`)].map((v) => ({
      width: v.videoWidth, height: v.videoHeight, time: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,
      track: v.dataset.track ?? '',
    })), li);
    await agent.screenshot({ path: path.join(cfg.shots, 'agent-screen-playback.png') });

    await agent.click('#stop-session');
    await waitState(agent, 'TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
    await waitState(sup, 'supervisor TERMINATED', () => window.consoleState.terminationCause !== '');
    const supEnd = await pageState(sup);
    out.supervisor.cause = supEnd.terminationCause;
    out.supervisor.final_errors = supEnd.errors;
    out.supervisor.notices = supEnd.notices;
    await sup.screenshot({ path: path.join(cfg.shots, 'supervisor-ended.png') });
    out.errors = (await pageState(agent)).errors;
    await sup.context().close();
    await agent.context().close();
  },

  // From the server's root (a newcomer's first URL) to the console; a
  // supervisor whose list still shows a session that has just ended joins
  // it and is refused with one clear error, then joins another session.
  async joinended(browser) {
    const agent = await openPage(browser, '', '/');
    out.root_url = agent.url();
    const ended = await startSession(agent, { cam: false });
    const sup = await openPage(browser, 'supervisor.html');
    await sup.waitForSelector(`tr[data-session="${ended.session_id}"] button.join`, { timeout: 10000 });
    // The list the supervisor looks at was read before the call ended.
    const stale = await (await fetch(`${cfg.base}/dev/sessions`)).json();
    await sup.route('**/dev/sessions', (route) => route.fulfill({ json: stale }));
    await agent.click('#stop-session');
    await waitState(agent, 'TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
    await sup.click(`tr[data-session="${ended.session_id}"] button.join`);
    await waitState(sup, 'the refusal', () => window.consoleState.errors.length > 0);
    await sleep(1500); // time for anything the refused session would still send or receive
    const refused = await pageState(sup);
    out.refused = { errors: refused.errors, supervisor_id: refused.sessionIds.at(-1), session_state: refused.sessionState, messages: await messageRows(sup) };
    await sup.screenshot({ path: path.join(cfg.shots, 'supervisor-refused.png') });
    await sup.unroute('**/dev/sessions');

    // Another call; the same page joins it.
    const live = await startSession(agent, { cam: false });
    await sup.click(`tr[data-session="${live.session_id}"] button.join`, { timeout: 10000 });
    await waitState(sup, 'supervisor CONNECTED', () => window.consoleState.sessionState === 'CONNECTED');
    await waitState(sup, 'supervisor audio', () => window.consoleState.stats?.audio?.packetsReceived > 0, undefined, 10000);
    const joined = await pageState(sup);
    // consoleState.errors keeps every error the page showed.
    out.supervisor = { errors: joined.errors.slice(refused.errors.length), connect_ms: joined.connectMs, stats: joined.stats };
    out.session_id = live.session_id;
    await sup.click('#leave');
    await waitState(sup, 'supervisor TERMINATED', () => window.consoleState.terminationCause !== '');
    await agent.click('#stop-session');
    await waitState(agent, 'TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
    out.errors = (await pageState(agent)).errors;
    await sup.context().close();
    await agent.context().close();
  },

  // The agent records to an upload URL that answers 503 (Retry-After: 2);
  // the server (-upload-max-attempts 2) tries twice. The page shows the
  // failed attempt and the next one coming, with the buttons of a stopped
  // recording and Elapsed stopped, then FAILED with the reason and where
  // the file is kept.
  async failedupload(browser) {
    const agent = await openPage(browser, '');
    Object.assign(out, await startSession(agent, { cam: false }));
    await agent.fill('#upload-url', cfg.refusing_upload);
    await startRecording(agent);
    await recordUntil(agent, 1500);
    await agent.click('#rec-stop');
    await waitState(agent, 'UPLOADING', () => window.consoleState.recordingState === 'UPLOADING');
    const elapsedAtStop = await agent.textContent('#rec-elapsed');
    await waitState(agent, 'a failed attempt with the next one due', () => window.consoleState.recordings.at(-1).retries.length > 0, undefined, 20000);
    out.while_retrying = await agent.evaluate(() => ({
      upload_status: document.querySelector('#upload-status').textContent,
      badge: document.querySelector('#recording-state').textContent,
      buttons: Object.fromEntries(['rec-start', 'rec-pause', 'rec-resume', 'rec-stop'].map((id) => [id, document.getElementById(id).disabled])),
    }));
    await agent.screenshot({ path: path.join(cfg.shots, 'agent-upload-retrying.png') });
    await waitState(agent, 'FAILED', () => window.consoleState.recordings.at(-1).state === 'FAILED', undefined, 30000);
    await waitState(agent, 'where the file is kept', () => document.querySelector('#upload-status').textContent.includes('keeps the file at /'), undefined, 5000);
    out.elapsed = { at_stop: elapsedAtStop, at_end: await agent.textContent('#rec-elapsed') };
    out.recording = await lastRecording(agent);
    out.shown = await agent.evaluate(() => ({
      badge: document.querySelector('#recording-state').textContent,
      detail: document.querySelector('#recording-detail').textContent,
      upload_status: document.querySelector('#upload-status').textContent,
      record_enabled: !document.getElementById('rec-start').disabled,
    }));
    await agent.screenshot({ path: path.join(cfg.shots, 'agent-upload-failed.png') });
    // The FAILED is an error the page shows; it is reported apart.
    out.page_errors = (await pageState(agent)).errors;
    await agent.click('#stop-session');
    await waitState(agent, 'TERMINATED', () => window.consoleState.sessionState === 'TERMINATED');
    out.errors = [];
    await agent.context().close();
  },

  // The tab closes mid-recording; the Go test looks for the upload and the
  // TERM_BY_DISCONNECT webhook.
  async tabclose(browser) {
    const agent = await openPage(browser, '');
    Object.assign(out, await startSession(agent));
    await startRecording(agent);
    await recordUntil(agent, 3000);
    out.recording = await lastRecording(agent);
    out.errors = (await pageState(agent)).errors;
    await agent.close();
    await agent.context().close();
  },
};

let browser;
try {
  if (!scenarios[name]) throw new Error(`unknown scenario ${name}; have ${Object.keys(scenarios).join(', ')}`);
  browser = await chromium.connectOverCDP(cfg.cdp);
  await scenarios[name](browser);
  out.ok = true;
} catch (err) {
  out.error = String(err?.stack ?? err);
} finally {
  process.stdout.write(JSON.stringify(out) + '\n');
  // Disconnects; the Go test owns Chromium and closes it.
  await browser?.close().catch(() => {});
  process.exit(out.ok ? 0 : 1);
}
