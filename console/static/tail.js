// The live audit tail: an EventSource on the console's /console/tail/stream
// (the admin API's audit stream, relayed). The browser reconnects by itself
// when a stream ends, sending the id of the last decision it got
// (Last-Event-ID), so none is lost or shown twice. Rows are built with
// textContent: every field is a stranger's text.
(() => {
  const body = document.getElementById('tail');
  if (!body) return;
  const state = document.getElementById('tail-state');
  const keep = 200;
  const setState = (s, text) => { state.dataset.state = s; state.textContent = text; };

  const cell = (row, text, cls) => {
    const td = row.insertCell();
    td.textContent = text ?? '';
    if (cls) td.className = cls;
    return td;
  };

  const add = (r) => {
    body.querySelector('.empty-row')?.remove();
    const row = body.insertRow(0);
    row.dataset.action = r.action;
    row.dataset.event = r.event_id ?? '';
    cell(row, (r.at ?? '').replace('T', ' ').replace(/\.\d+/, '').replace('Z', ''), 'nowrap');
    const badge = document.createElement('span');
    badge.className = `status action action-${String(r.action).toLowerCase()}`;
    badge.textContent = r.action;
    cell(row, '').append(badge);
    cell(row, r.source);
    const ev = cell(row, '');
    if (r.source && r.event_id) {
      const a = document.createElement('a');
      a.href = `/console/events/${encodeURIComponent(r.source)}/${encodeURIComponent(r.event_id)}`;
      a.textContent = r.event_id;
      ev.append(a);
    } else {
      ev.textContent = r.event_id ?? '';
    }
    cell(row, r.customer_id);
    cell(row, [r.reason, r.http_status ? `HTTP ${r.http_status}` : ''].filter(Boolean).join(' · '));
    cell(row, `${r.actor} on ${r.instance}`);
    while (body.rows.length > keep) body.deleteRow(body.rows.length - 1);
  };

  const source = new EventSource(body.dataset.stream);
  source.addEventListener('ready', () => setState('live', 'Live.'));
  source.addEventListener('audit', (e) => add(JSON.parse(e.data)));
  source.addEventListener('end', () => setState('reconnecting', 'Reconnecting…'));
  source.addEventListener('error', () => {
    setState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting',
      source.readyState === EventSource.CLOSED ? 'Disconnected: reload the page.' : 'Reconnecting…');
  });
  window.addEventListener('pagehide', () => source.close());
})();
