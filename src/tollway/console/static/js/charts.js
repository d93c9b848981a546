// Charts as inline SVG, drawn here: a column chart over time and a horizontal share chart.
// Colours come from style.css (classes), so the CSP needs no inline style.

import { h, svg } from './dom.js';

const W = 640;
const H = 200;
const PAD = { top: 12, right: 8, bottom: 30, left: 96 };

/** points: [{label, value}]; format: value → text. */
export function columnChart(title, points, format) {
  const max = Math.max(0, ...points.map((p) => p.value));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const step = innerW / Math.max(points.length, 1);
  const barW = Math.max(step * 0.7, 1);
  const every = Math.ceil(points.length / 8);
  const last = points.length - 1;
  const total = points.reduce((sum, p) => sum + p.value, 0);
  const chart = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': `${title}: ${format(total)} in total over ${points.length} days, highest ${format(max)}`,
  },
  svg('line', { x1: PAD.left, x2: W - PAD.right, y1: PAD.top + innerH, y2: PAD.top + innerH, class: 'axis' }),
  svg('text', { x: PAD.left - 6, y: PAD.top + 4, class: 'tick', 'text-anchor': 'end' }, format(max)),
  svg('text', { x: PAD.left - 6, y: PAD.top + innerH, class: 'tick', 'text-anchor': 'end' }, format(0)),
  points.map((p, i) => {
    const height = max > 0 ? (p.value / max) * innerH : 0;
    const x = PAD.left + i * step + (step - barW) / 2;
    return [
      svg('rect', {
        x, y: PAD.top + innerH - height, width: barW, height: Math.max(height, p.value > 0 ? 1 : 0),
        class: 'bar', 'data-value': p.value,
      }, svg('title', null, `${p.label}: ${format(p.value)}`)),
      // Counted back from the last point, so the newest day (today) always has its label.
      (last - i) % every === 0
        ? svg('text', { x: x + barW / 2, y: H - 8, class: 'tick', 'text-anchor': 'middle' }, p.label)
        : null,
    ];
  }));
  return h('figure', { class: 'chart-figure' }, h('figcaption', null, title), chart);
}

/** A share chart: rows [{label, value, detail}] as horizontal bars with their percentage. */
export function shareChart(title, rows, format) {
  const total = rows.reduce((sum, r) => sum + r.value, 0);
  const sorted = [...rows].sort((a, b) => b.value - a.value);
  const rowH = 28;
  const height = Math.max(sorted.length, 1) * rowH;
  const labelW = 220;
  const barMax = W - labelW - 170;
  const chart = svg('svg', {
    viewBox: `0 0 ${W} ${height}`, class: 'chart share', role: 'img',
    'aria-label': `${title}: ${sorted.map((r) => `${r.label} ${format(r.value)}`).join(', ') || 'nothing yet'}`,
  },
  sorted.length === 0
    ? svg('text', { x: 0, y: 18, class: 'tick' }, 'Nothing yet in this period.')
    : sorted.map((r, i) => {
      const share = total > 0 ? r.value / total : 0;
      const y = i * rowH;
      return svg('g', { class: `series-${i % 6}` },
        svg('text', { x: 0, y: y + 18, class: 'label' }, r.label),
        svg('rect', { x: labelW, y: y + 6, width: Math.max(share * barMax, r.value > 0 ? 2 : 0), height: 16, class: 'bar' },
          svg('title', null, `${r.label}: ${format(r.value)} (${Math.round(share * 100)} %)`)),
        svg('text', { x: labelW + Math.max(share * barMax, 2) + 6, y: y + 18, class: 'tick' },
          `${format(r.value)} · ${Math.round(share * 100)} %`));
    }));
  return h('figure', { class: 'chart-figure' }, h('figcaption', null, title), chart);
}
