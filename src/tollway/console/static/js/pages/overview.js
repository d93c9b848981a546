// Overview: balance, spend today and this month, requests and cost per day, the split by
// model and by provider, and the budgets with what is left.

import { api, query } from '../api.js';
import { columnChart, shareChart } from '../charts.js';
import { h } from '../dom.js';
import { budgetTable } from './budgets.js';
import { count, dayLabel, eur, eurExact, isoSeconds, startOfUtcDay, startOfUtcMonth } from '../format.js';

const DAYS = 30;

function usage(from, bucket, groupBy) {
  return api(`/v1/manage/usage${query({ from: isoSeconds(from), bucket, group_by: groupBy })}`);
}

function sum(rows, field) {
  return rows.reduce((total, row) => total + Number(row[field] || 0), 0);
}

function perDay(rows, first) {
  const days = Array.from({ length: DAYS }, (_, i) => {
    const day = new Date(first.getTime() + i * 86_400_000);
    return { key: day.toISOString().slice(0, 10), label: dayLabel(day), requests: 0, cost: 0 };
  });
  const byKey = new Map(days.map((d) => [d.key, d]));
  for (const row of rows) {
    const day = byKey.get(String(row.bucket_start).slice(0, 10));
    if (day) {
      day.requests += row.requests;
      day.cost += row.cost;
    }
  }
  return days;
}

function groupTotals(rows, column) {
  const totals = new Map();
  for (const row of rows) {
    const name = row[column] ?? '(none)';
    totals.set(name, (totals.get(name) || 0) + row.cost);
  }
  return [...totals].map(([label, value]) => ({ label, value }));
}

// Prompt tokens include the cached and cache-written ones; completion tokens the reasoning.
function tokenClasses(rows) {
  const facts = [
    ['Prompt tokens', 'prompt_tokens'],
    ['of which cached', 'cached_prompt_tokens'],
    ['of which written to cache', 'cache_write_tokens'],
    ['Completion tokens', 'completion_tokens'],
    ['of which reasoning', 'reasoning_tokens'],
  ];
  return h('dl', { class: 'facts' },
    facts.map(([label, field]) => [h('dt', null, label), h('dd', { 'data-field': field }, count(sum(rows, field)))]));
}

function stat(label, value, id) {
  return h('div', { class: 'card stat' }, h('h2', null, label), h('p', { class: 'figure', id }, value));
}

export async function render(ctx) {
  const today = startOfUtcDay();
  const first = new Date(today.getTime() - (DAYS - 1) * 86_400_000);
  const isAdmin = ctx.me.role === 'admin';
  const [balance, todayRows, monthRows, daily, byModel, byProvider, budgets] = await Promise.all([
    api('/v1/user/balance'),
    usage(today, '1d', 'none'),
    usage(startOfUtcMonth(), '1M', 'none'),
    usage(first, '1d', 'none'),
    usage(first, '1d', 'model'),
    usage(first, '1d', 'provider'),
    isAdmin ? api('/v1/manage/budgets') : Promise.resolve(null),
  ]);
  const days = perDay(daily.rows, first);
  const scope = isAdmin ? 'the whole project' : 'your own usage';
  return h('section', { 'aria-labelledby': 'overview-title' },
    h('h1', { id: 'overview-title' }, 'Overview'),
    h('p', { class: 'lead' }, `Spend and traffic of ${scope} in project ${ctx.me.project}. Days are UTC days.`),
    h('div', { class: 'stats' },
      stat('Balance', eurExact(balance.current_balance), 'stat-balance'),
      stat('Spend today', eur(sum(todayRows.rows, 'cost')), 'stat-today'),
      stat('Spend this month', eur(sum(monthRows.rows, 'cost')), 'stat-month'),
      stat(`Requests, last ${DAYS} days`, count(sum(daily.rows, 'requests')), 'stat-requests')),
    h('div', { class: 'grid-2' },
      h('div', { class: 'card' }, columnChart('Cost per day (EUR)', days.map((d) => ({ label: d.label, value: d.cost })), eur)),
      h('div', { class: 'card' }, columnChart('Requests per day', days.map((d) => ({ label: d.label, value: d.requests })), count))),
    h('div', { class: 'grid-2' },
      h('div', { class: 'card', id: 'split-model' }, shareChart(`Cost by model, last ${DAYS} days`, groupTotals(byModel.rows, 'model'), eur)),
      h('div', { class: 'card', id: 'split-provider' }, shareChart(`Cost by provider, last ${DAYS} days`, groupTotals(byProvider.rows, 'provider'), eur))),
    h('div', { class: 'card', id: 'token-classes' },
      h('h2', null, `Tokens by class, last ${DAYS} days`),
      tokenClasses(daily.rows)),
    h('div', { class: 'card' },
      h('h2', null, 'Budgets'),
      budgets
        ? (budgets.budgets.length ? budgetTable(budgets.budgets) : h('p', null, 'No budgets yet. ', h('a', { href: '#/budgets' }, 'Create one.')))
        : h('p', null, 'Budgets are managed by project admins.')));
}
