// Numbers, money and dates, one way everywhere.

const eurFormats = [2, 4, 6].map((digits) => new Intl.NumberFormat('en-GB', {
  style: 'currency', currency: 'EUR', minimumFractionDigits: 2, maximumFractionDigits: digits,
}));

/** EUR with enough digits to show small costs (down to one credit, 0.000001 EUR). */
export function eur(amount) {
  const value = Number(amount) || 0;
  const abs = Math.abs(value);
  const format = abs === 0 || abs >= 1 ? eurFormats[0] : abs >= 0.01 ? eurFormats[1] : eurFormats[2];
  return format.format(value);
}

const exactFormat = new Intl.NumberFormat('en-GB', {
  style: 'currency', currency: 'EUR', minimumFractionDigits: 2, maximumFractionDigits: 6,
});
/** EUR to the credit (0.000001 EUR): for balances, which must never look rounded. */
export function eurExact(amount) {
  return exactFormat.format(Number(amount) || 0);
}

const integer = new Intl.NumberFormat('en-GB');
export function count(n) {
  return integer.format(Number(n) || 0);
}

export function ms(value) {
  return value === null || value === undefined ? '—' : `${count(Math.round(value))} ms`;
}

const dateTime = new Intl.DateTimeFormat('en-GB', {
  dateStyle: 'medium', timeStyle: 'medium', timeZone: 'UTC',
});
/** A moment (ISO string or Unix seconds) in UTC, as the API counts days in UTC. */
export function when(value) {
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : `${dateTime.format(date)} UTC`;
}

export function startOfUtcDay(date = new Date()) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
}

export function startOfUtcMonth(date = new Date()) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}

export function isoSeconds(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function dayLabel(date) {
  return date.toISOString().slice(5, 10);
}
