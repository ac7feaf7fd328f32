// The console's only way to the server: the existing APIs, each call carrying the token that
// Login returned. The token lives in sessionStorage (this tab only, gone when it closes).

const TOKEN_KEY = 'radacctd.token';
const USER_KEY = 'radacctd.user';

const webservice = document.querySelector('meta[name="radacctd-webservice"]')?.content || '/webconsole/api';

/** The REST path of the web-session API (SPEC §6). */
export const WEB_SESSIONS = '/rest/v1/master/logicalroles/ws/sessions';

/** An API answer that is not a success, with the server's message. */
export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Listeners told when the server no longer accepts the token. */
const expiredListeners = new Set();
export function onExpired(fn) {
  expiredListeners.add(fn);
}

export function session() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const user = sessionStorage.getItem(USER_KEY);
  if (!token || !user) return null;
  try {
    return { token, ...JSON.parse(user) };
  } catch {
    return null;
  }
}

function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

/** The message of an error body in the Commvault shape or a GraphQL response. */
function messageOf(body, fallback) {
  if (body && typeof body === 'object') {
    if (typeof body.errorMessage === 'string') return body.errorMessage;
    if (Array.isArray(body.errors) && body.errors[0]?.message) return body.errors[0].message;
  }
  return fallback;
}

async function call(path, { method = 'GET', body, auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) {
    const s = session();
    if (!s) throw new ApiError(401, 'not logged in');
    headers.Authtoken = s.token;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'the server does not answer');
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      messageOf(parsed, `${response.status} ${response.statusText}`),
      response.headers.get('Retry-After'),
    );
    if (auth && response.status === 401) {
      forget();
      for (const fn of expiredListeners) fn(error);
    }
    throw error;
  }
  return parsed;
}

/** The base64 of a password's UTF-8 bytes, as Login wants it. */
function base64Utf8(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Logs in; keeps the token in sessionStorage and returns the session. */
export async function login(username, password) {
  const answer = await call(`${webservice}/Login`, {
    method: 'POST',
    body: { username, password: base64Utf8(password) },
    auth: false,
  });
  sessionStorage.setItem(TOKEN_KEY, answer.token);
  sessionStorage.setItem(
    USER_KEY,
    JSON.stringify({ userName: answer.userName, userId: answer.userId, sessionId: answer.sessionId }),
  );
  return session();
}

/** Ends the session on the server (if it still knows it) and forgets the token. */
export async function logout() {
  try {
    await call(`${webservice}/Logout`, { method: 'POST' });
  } catch {
    // Already closed on the server: forgetting it here is all that is left.
  } finally {
    forget();
  }
}

/** Runs a GraphQL operation; returns its data or throws the first error. */
export async function graphql(query, variables = {}) {
  const body = await call('/graphql', { method: 'POST', body: { query, variables } });
  if (body?.errors?.length) throw new ApiError(200, body.errors[0].message);
  return body.data;
}

/** The `sites` query parameter: JSON text, URL-encoded. */
function sitesParam(sites) {
  return `sites=${encodeURIComponent(JSON.stringify(sites))}`;
}

export function listWebSessions(sites) {
  return call(`${WEB_SESSIONS}?${sitesParam(sites)}`);
}

export function logoutAllButCurrent(domain, user, sites) {
  return call(WEB_SESSIONS, { method: 'POST', body: { action: 'logout', domain, user, sites } });
}

export function closeWebSession(sessionId, sites) {
  return call(`${WEB_SESSIONS}/${encodeURIComponent(sessionId)}?${sitesParam(sites)}`, {
    method: 'DELETE',
  });
}
