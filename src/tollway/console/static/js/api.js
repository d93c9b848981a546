// The console's only way to the gateway: same-origin fetch with the session's bearer key,
// or — after a single sign-on — the HttpOnly session cookie plus the CSRF token and the
// chosen project in headers. The key lives in sessionStorage (this tab only, gone when the
// tab closes), never in a URL; the CSRF token in memory only.

const STORAGE_KEY = 'tollway.managementKey';
const PROJECT_KEY = 'tollway.project';

export const session = {
  get key() {
    return sessionStorage.getItem(STORAGE_KEY);
  },
  signIn(key) {
    sessionStorage.setItem(STORAGE_KEY, key);
  },
  signOut() {
    sessionStorage.removeItem(STORAGE_KEY);
  },
};

/** The single sign-on session, when there is one: {user, projects, csrf_token}. */
export const sso = {
  state: null,
  get signedIn() {
    return Boolean(this.state && this.state.signed_in);
  },
  get project() {
    const projects = this.state?.projects ?? [];
    const wanted = sessionStorage.getItem(PROJECT_KEY);
    return (projects.find((p) => p.id === wanted) ?? projects[0])?.id ?? null;
  },
  choose(projectId) {
    sessionStorage.setItem(PROJECT_KEY, projectId);
  },
  /** Ask the gateway whether single sign-on is offered and who is signed in. */
  async load() {
    try {
      const response = await fetch('/auth/session', { cache: 'no-store', credentials: 'same-origin' });
      this.state = response.ok ? await response.json() : { oidc: false, signed_in: false };
    } catch {
      this.state = { oidc: false, signed_in: false };
    }
    return this.state;
  },
  async signOut() {
    if (!this.signedIn) return;
    const csrf = this.state.csrf_token;
    this.state = { ...this.state, signed_in: false };
    await fetch('/auth/session', {
      method: 'DELETE', headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin', cache: 'no-store',
    }).catch(() => null);
  },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  /** Field name → messages, from the API's "field: problem; field: problem" wording. */
  get fields() {
    return fieldErrors(this.message);
  }
}

const FIELD = /^([a-z_]+(?:\.[a-z_0-9]+)*): (.+)$/;

export function fieldErrors(message) {
  const found = new Map();
  const body = message.replace(/^(invalid input|registry validation failed): /, '');
  for (const part of body.split('; ')) {
    const match = FIELD.exec(part);
    if (!match) continue;
    const name = match[1].split('.').filter((p) => !/^\d+$/.test(p)).pop();
    found.set(name, [...(found.get(name) || []), match[2]]);
  }
  return found;
}

function messageOf(status, data) {
  if (data && typeof data.error === 'string') return data.error;
  if (data && data.error && typeof data.error.message === 'string') return data.error.message;
  return `The gateway answered HTTP ${status}`;
}

let onSignedOut = () => {};
/** Called when the session's key stops working (deleted elsewhere): back to sign-in. */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** Call the API; resolves to the parsed JSON, rejects with ApiError. `key` overrides the
 * session key (sign-in checks a key before keeping it). */
export async function api(path, { method = 'GET', body, key, signal } = {}) {
  const bearer = key ?? session.key;
  const cookie = !bearer && sso.signedIn;
  const headers = { Accept: 'application/json' };
  if (cookie) {
    headers['X-CSRF-Token'] = sso.state.csrf_token;
    if (sso.project) headers['X-Tollway-Project'] = sso.project;
  } else {
    headers.Authorization = `Bearer ${bearer}`;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      // A string is JSON text already (a budget's exact decimal limit, see budgets.js).
      body: body === undefined || typeof body === 'string' ? body : JSON.stringify(body),
      cache: 'no-store',
      credentials: cookie ? 'same-origin' : 'omit',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'The gateway did not answer. Is it running?');
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && key === undefined && (session.key || cookie)) onSignedOut();
    throw new ApiError(response.status, messageOf(response.status, data));
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
