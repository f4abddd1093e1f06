const port = 19222;
(async () => {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const page = targets.find((t) => t.type === 'page');
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener('open', r));
  let id = 0;
  const call = (method, params) => new Promise((resolve) => {
    const my = ++id;
    ws.addEventListener('message', function h(ev) {
      const m = JSON.parse(ev.data);
      if (m.id === my) { ws.removeEventListener('message', h); resolve(m.result); }
    });
    ws.send(JSON.stringify({ id: my, method, params }));
  });
  const expr = `(async () => JSON.stringify({state: sluice.state, pid: sluice.participantId,
    tiles: [...document.querySelectorAll('.tile')].map(t => t.dataset.participant + ':' + t.querySelector('.label').textContent),
    events: sluice.events.map(e => e.type + (e.participantId ? '(' + e.participantId + (e.reason ? ',' + e.reason : '') + ')' : '') + (e.revision ? e.revision : '')).join(' '),
    error: document.getElementById('error').textContent, stats: await sluice.stats()}))()`;
  const r = await call('Runtime.evaluate', { expression: expr, awaitPromise: true });
  console.log(JSON.stringify(JSON.parse(r.result.value), null, 1));
  await call('Runtime.evaluate', { expression: `document.getElementById('leave').click()` });
  await new Promise((r) => setTimeout(r, 500));
  const r2 = await call('Runtime.evaluate', { expression: `sluice.state + ' tiles=' + document.querySelectorAll('.tile').length` });
  console.log('after leave:', r2.result.value);
  ws.close();
})();
