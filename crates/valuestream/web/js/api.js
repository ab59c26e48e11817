// The dashboard's only way to data: the same API a script would call.

export class ApiError extends Error {
  constructor(status, message, url) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value != null && value !== '') search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** GET an API path; the token cookie goes along by itself. */
export async function get(path, params) {
  const url = path + query(params);
  const response = await fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = `${url}: ${body.error}`;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message, url);
  }
  return response.json();
}
