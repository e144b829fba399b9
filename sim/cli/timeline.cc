// kvsim replay --html: the page (timeline.h). The C++ side pairs each message's send with its
// arrival or loss and writes the marks as JSON; the script draws whichever window of the run
// the reader asks for.
#include "sim/cli/timeline.h"

#include <cstdio>
#include <map>
#include <string_view>

#include <boost/json.hpp>

namespace kv::sim::cli {

namespace {

std::string_view kind_name(Mark::Kind k) {
  switch (k) {
    case Mark::Kind::send: return "send";
    case Mark::Kind::arrive: return "arrive";
    case Mark::Kind::lost: return "lost";
    case Mark::Kind::crash: return "crash";
    case Mark::Kind::disk_loss: return "disk_loss";
    case Mark::Kind::restart: return "restart";
    case Mark::Kind::cut: return "cut";
    case Mark::Kind::uncut: return "uncut";
    case Mark::Kind::clog: return "clog";
    case Mark::Kind::clock_step: return "clock_step";
    case Mark::Kind::op_start: return "op_start";
    case Mark::Kind::op_end: return "op_end";
    case Mark::Kind::heal: return "heal";
    case Mark::Kind::quiet: return "quiet";
    case Mark::Kind::violation: return "violation";
  }
  return "?";
}

constexpr std::string_view page_head = R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kvsim timeline</title>
<style>
body { font: 13px system-ui, sans-serif; margin: 12px; color: #222; }
h1 { font-size: 16px; margin: 0 0 6px; }
#controls { margin: 6px 0; } #controls input[type=number] { width: 7em; }
#violations li { color: #b00; cursor: pointer; margin: 2px 0; }
#wrap { overflow-x: auto; border: 1px solid #ccc; }
svg text { font: 11px system-ui, sans-serif; }
.lane { stroke: #999; } .lane-label { font-weight: bold; }
.tick { stroke: #eee; } .tick-label { fill: #777; }
.msg { stroke: #3b6ea8; stroke-opacity: .35; } .msg.lost { stroke: #d22; stroke-opacity: .8; stroke-dasharray: 3 2; }
.msg.inflight { stroke: #999; stroke-dasharray: 1 2; }
.down { fill: #bbb; fill-opacity: .55; } .cut { fill: #f2d024; fill-opacity: .35; } .clog { fill: #f08a24; fill-opacity: .35; }
.crash { fill: #d00; font-weight: bold; } .disk-loss { fill: #700; } .restart { fill: #1a8a1a; } .step { fill: #7a3db8; }
.op.ok { fill: #2a9d4a; } .op.failed { fill: #d33; } .op.unknown { fill: #e59400; } .op.open { fill: #999; }
.heal { stroke: #1a8a1a; stroke-width: 2; } .quiet { stroke: #3b6ea8; stroke-width: 2; }
.violation { stroke: #d00; stroke-width: 3; } .violation-label { fill: #d00; font-weight: bold; }
</style></head><body>
<h1 id="title"></h1>
<div id="summary"></div>
<ol id="violations"></ol>
<div id="controls">
  from <input id="from" type="number" min="0" step="any"> ms
  to <input id="to" type="number" min="0" step="any"> ms
  zoom <input id="zoom" type="number" min="0.0001" step="any"> px/ms
  <label><input id="showmsgs" type="checkbox" checked> messages</label>
  <button id="show">show</button> <button id="all">whole run</button>
</div>
<div id="wrap"><svg id="timeline" xmlns="http://www.w3.org/2000/svg"></svg></div>
<script type="application/json" id="run">)";

constexpr std::string_view page_tail = R"(</script>
<script>
(function () {
  const run = JSON.parse(document.getElementById('run').textContent);
  const NS = 'http://www.w3.org/2000/svg';
  const laneH = 56, top = 34, left = 64, right = 40;
  const endUs = run.end_us;

  // Intervals and points from the marks, in the order they happened.
  const down = [], cuts = [], clogs = [], points = [], across = [], ops = new Map();
  const downSince = {}, cutOpen = {};
  for (const [kind, at, node, id, text] of run.marks) {
    if (kind === 'crash') { downSince[node] = at; points.push({kind, at, node, text}); }
    else if (kind === 'disk_loss' || kind === 'clock_step') points.push({kind, at, node, text});
    else if (kind === 'restart') {
      down.push({node, from: downSince[node] ?? 0, to: at}); delete downSince[node];
      points.push({kind, at, node, text});
    } else if (kind === 'cut') cutOpen[node + ':' + id] = {at, text};
    else if (kind === 'uncut') {
      const o = cutOpen[node + ':' + id];
      if (o) { cuts.push({node, from: o.at, to: at, text: o.text}); delete cutOpen[node + ':' + id]; }
    } else if (kind === 'clog') clogs.push({node, from: at, to: id});
    else if (kind === 'op_start') ops.set(id, {node, from: at, to: null, text, result: null});
    else if (kind === 'op_end') { const o = ops.get(id); if (o) { o.to = at; o.result = text; } }
    else if (kind === 'heal' || kind === 'quiet' || kind === 'violation') across.push({kind, at, text});
  }
  for (const node in downSince) down.push({node: +node, from: downSince[node], to: endUs});
  for (const k in cutOpen) cuts.push({node: +k.split(':')[0], from: cutOpen[k].at, to: endUs, text: cutOpen[k].text});

  document.getElementById('title').textContent =
    'kvsim timeline: ' + run.label + (run.ok ? ' (ok)' : ' (FAILED)');
  document.getElementById('summary').textContent =
    run.nodes + ' nodes, ' + (endUs / 1e6).toFixed(3) + ' s simulated, ' + run.messages.length +
    ' messages, ' + ops.size + ' client operations; trace-hash ' + run.trace_hash;
  const list = document.getElementById('violations');
  for (const v of across.filter(a => a.kind === 'violation')) {
    const li = document.createElement('li');
    li.textContent = (v.at / 1000).toFixed(3) + ' ms: ' + v.text;
    li.onclick = () => { const c = v.at / 1000; show(Math.max(0, c - 500), c + 100, null); };
    list.appendChild(li);
  }

  const svg = document.getElementById('timeline');
  function el(name, attrs, parent, title) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (title) { const t = document.createElementNS(NS, 'title'); t.textContent = title; e.appendChild(t); }
    (parent || svg).appendChild(e);
    return e;
  }
  const ms = us => (us / 1000).toFixed(3) + ' ms';

  function show(fromMs, toMs, zoom) {
    const span = Math.max(toMs - fromMs, 0.001);
    const px = zoom || Math.min(2, Math.max(0.005, 8000 / span));
    document.getElementById('from').value = +fromMs.toFixed(3);
    document.getElementById('to').value = +toMs.toFixed(3);
    document.getElementById('zoom').value = +px.toPrecision(3);
    const showMsgs = document.getElementById('showmsgs').checked;
    const fromUs = fromMs * 1000, toUs = toMs * 1000;
    const inView = (a, b) => b >= fromUs && a <= toUs;
    const x = us => left + (Math.min(Math.max(us, fromUs), toUs) / 1000 - fromMs) * px;
    const y = n => top + (n - 0.5) * laneH;
    const width = left + span * px + right, height = top + run.nodes * laneH + 24;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute('width', width); svg.setAttribute('height', height);
    const counts = {lanes: 0, messages: 0, lost: 0, crashes: 0, ops: 0, violations: 0};

    // Time axis: a tick about every 120 px, at 1, 2 or 5 times a power of ten.
    const raw = 120 / px, pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(f => f * pow).find(s => s >= raw);
    for (let t = Math.ceil(fromMs / step) * step; t <= toMs; t += step) {
      const tx = left + (t - fromMs) * px;
      el('line', {class: 'tick', x1: tx, x2: tx, y1: top - 6, y2: height - 20});
      el('text', {class: 'tick-label', x: tx + 2, y: top - 10}).textContent = +t.toFixed(3) + ' ms';
    }
    for (const d of down) if (inView(d.from, d.to))
      el('rect', {class: 'down', x: x(d.from), y: y(d.node) - laneH / 2 + 3, width: Math.max(1, x(d.to) - x(d.from)), height: laneH - 6},
         null, 'n' + d.node + ' down from ' + ms(d.from) + ' to ' + ms(d.to));
    for (const c of cuts) if (inView(c.from, c.to))
      el('rect', {class: 'cut', x: x(c.from), y: y(c.node) - laneH / 2 + 3, width: Math.max(1, x(c.to) - x(c.from)), height: laneH - 6},
         null, 'n' + c.node + ' ' + c.text + ', ' + ms(c.from) + ' to ' + ms(c.to));
    for (const c of clogs) if (inView(c.from, c.to))
      el('rect', {class: 'clog', x: x(c.from), y: y(c.node) - 8, width: Math.max(1, x(c.to) - x(c.from)), height: 16},
         null, 'n' + c.node + ' clogged from ' + ms(c.from) + ' to ' + ms(c.to));
    for (let n = 1; n <= run.nodes; ++n) {
      el('line', {class: 'lane', x1: left, x2: width - right, y1: y(n), y2: y(n), 'data-node': n});
      el('text', {class: 'lane-label', x: 8, y: y(n) + 4}).textContent = 'n' + n;
      ++counts.lanes;
    }
    for (const [id, o] of ops) {
      const to = o.to === null ? endUs : o.to;
      if (!inView(o.from, to)) continue;
      const outcome = o.result === null ? 'open' : o.result.split(/[: (]/)[0];
      el('rect', {class: 'op ' + outcome, x: x(o.from), y: y(o.node) - laneH / 2 + 5 + (id % 5) * 4,
                  width: Math.max(1.5, x(to) - x(o.from)), height: 3},
         null, o.text + ' -> ' + (o.result ?? 'no answer by the end') + ' [' + ms(o.from) + ' .. ' + ms(to) + ']');
      ++counts.ops;
    }
    if (showMsgs) {
      for (const [at, from, to, end, state, text, why] of run.messages) {
        const until = end < 0 ? endUs : end;
        if (!inView(at, until)) continue;
        const lost = state === 1;
        let x2 = x(until), y2 = y(to);
        if (lost) {  // drawn a third of the way: it never arrived
          x2 = x(at) + (x(until) - x(at)) / 3 + 4; y2 = y(from) + (y(to) - y(from)) / 3;
        }
        el('line', {class: 'msg' + (lost ? ' lost' : state === 2 ? ' inflight' : ''), x1: x(at), y1: y(from), x2, y2},
           null, text + ' [' + ms(at) + (state === 0 ? ' -> ' + ms(end) : '') + ']' + (lost ? ' lost: ' + why : state === 2 ? ' (still on its way at the end)' : ''));
        ++counts.messages; if (lost) ++counts.lost;
      }
    }
    const glyph = {crash: '\u2715', disk_loss: '\u25cf', restart: '\u25b2', clock_step: '\u25c6'};
    const cls = {crash: 'crash', disk_loss: 'disk-loss', restart: 'restart', clock_step: 'step'};
    for (const p of points) if (inView(p.at, p.at)) {
      el('text', {class: cls[p.kind], x: x(p.at) - 4, y: y(p.node) - laneH / 2 + 12}, null,
         'n' + p.node + ' at ' + ms(p.at) + ': ' + p.text).appendChild(document.createTextNode(glyph[p.kind]));
      if (p.kind === 'crash') ++counts.crashes;
    }
    for (const a of across) if (inView(a.at, a.at)) {
      el('line', {class: a.kind, x1: x(a.at), x2: x(a.at), y1: top - 4, y2: height - 20}, null,
         ms(a.at) + ': ' + (a.kind === 'violation' ? a.text : a.kind === 'heal' ? 'faults healed' : 'quiet'));
      el('text', {class: a.kind === 'violation' ? 'violation-label' : 'tick-label', x: x(a.at) + 3, y: height - 8})
        .textContent = a.kind === 'violation' ? a.text.split(':')[0] : a.kind;
      if (a.kind === 'violation') ++counts.violations;
    }
    for (const k in counts) svg.dataset[k] = counts[k];
    svg.dataset.ready = '1';
  }
  const value = id => parseFloat(document.getElementById(id).value);
  document.getElementById('show').onclick = () => show(value('from'), value('to'), value('zoom'));
  document.getElementById('all').onclick = () => show(0, endUs / 1000, null);
  show(0, endUs / 1000, null);
})();
</script>
</body></html>
)";

}  // namespace

TimelineCounts count_timeline(const std::vector<Mark>& marks, std::uint32_t nodes) {
  TimelineCounts c;
  c.lanes = nodes;
  for (const Mark& m : marks) {
    c.messages += m.kind == Mark::Kind::send;
    c.lost += m.kind == Mark::Kind::lost;
    c.crashes += m.kind == Mark::Kind::crash;
    c.ops += m.kind == Mark::Kind::op_start;
    c.violations += m.kind == Mark::Kind::violation;
  }
  return c;
}

std::string timeline_html(const std::string& label, const Scenario& scenario,
                          const std::vector<Mark>& marks, const RunResult& result) {
  namespace json = boost::json;
  // Each message once: [sent at, from, to, ended at (-1: still on its way), 0 arrived / 1 lost /
  // 2 on its way, what it was, why it was lost].
  json::array messages;
  std::map<std::uint64_t, std::size_t> by_id;
  json::array rest;
  for (const Mark& m : marks) {
    if (m.kind == Mark::Kind::send) {
      by_id[m.id] = messages.size();
      messages.push_back(json::array{m.at_us, m.node, m.peer, -1, 2, m.text, ""});
    } else if (m.kind == Mark::Kind::arrive || m.kind == Mark::Kind::lost) {
      auto it = by_id.find(m.id);
      if (it == by_id.end()) continue;
      json::array& row = messages[it->second].as_array();
      row[3] = m.at_us;
      row[4] = m.kind == Mark::Kind::lost ? 1 : 0;
      row[6] = m.text;
      by_id.erase(it);
    } else {
      rest.push_back(json::array{kind_name(m.kind), m.at_us, m.node, m.id, m.text});
    }
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(result.trace_hash));
  json::object run;
  run["label"] = label;
  run["seed"] = scenario.seed;
  run["nodes"] = scenario.knobs.nodes;
  run["end_us"] = result.sim_time_us;
  run["ok"] = result.ok();
  run["trace_hash"] = hash;
  run["messages"] = std::move(messages);
  run["marks"] = std::move(rest);
  // Inside a script element only "</" could end it early: JSON allows "<\/" for it.
  std::string data = json::serialize(run);
  std::string escaped;
  escaped.reserve(data.size());
  for (std::size_t i = 0; i < data.size(); ++i) {
    escaped += data[i];
    if (data[i] == '<' && i + 1 < data.size() && data[i + 1] == '/') escaped += '\\';
  }
  std::string page;
  page.reserve(page_head.size() + escaped.size() + page_tail.size());
  page.append(page_head).append(escaped).append(page_tail);
  return page;
}

}  // namespace kv::sim::cli
