// The one Socket.IO connection of the page, as the tutorial's clients keep it: created
// with autoConnect off, connected after sign-in with the credentials in `auth`.
import { io } from 'socket.io-client';

// Same origin: the page is served by parlor (`--static`) or by Vite's proxy in development.
export const socket = io({
  autoConnect: false,
  transports: ['websocket', 'polling'],
  reconnectionDelay: 500,
  reconnectionDelayMax: 3000,
});

/** Connects as a token's user, or (dev mode) with a display name. */
export function connectSocket({ token, username }) {
  socket.auth = token ? { token } : { username };
  socket.connect();
}

export function disconnectSocket() {
  socket.disconnect();
}

const ACK_TIMEOUT_MS = 10_000;

/**
 * Emits with an ack and resolves with the server's answer; an `{error, code}` answer or no
 * answer in time becomes `{error, code}` too, so callers show one shape.
 */
export async function request(event, ...args) {
  try {
    return await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, ...args);
  } catch {
    return { error: `No answer to ${event}`, code: 'TIMEOUT' };
  }
}

/** The claims of a JWT (not verified: the server does that), or null. */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}
