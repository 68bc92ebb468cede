// A browser WebSocket that reconnects the way wsgate's close codes ask it to.
// No dependencies and no build step: copy it next to your page and import it.
//
//   import { connect } from './wsgate-reconnect.js';
//   const conn = connect('wss://chat.example.com/ws', {
//     protocols: async () => ['chat.v1', await freshToken()], // a JWT rides in Sec-WebSocket-Protocol
//     onmessage: (event) => show(event.data),
//   });
//   conn.send('hello'); // false while there is no open connection
//   conn.close(); // for good: no reconnect after this
//
// README.md beside this file says what each close code means when wsgate sends it.

/** The server asks the client back: a drained or restarting backend (1012), a shutdown or idle timeout (1001). */
const RESTART = new Set([1001, 1012]);
/** Coming straight back would hit the same wall: wait longer after each failure in a row. */
const BACKOFF = new Set([1006, 1008, 1009, 1011, 1013]);

const DEFAULTS = {
  /** Subprotocols, or a function (may be async) called before every attempt, so that a reconnect gets a fresh token. */
  protocols: [],
  /** [min, max] ms before reconnecting after 1001/1012: the clients of a drained backend spread over this window. */
  restartJitter: [100, 1000],
  /** Backoff after the first failure in a row (ms); doubled per further failure, up to backoffMax; half of it is random. */
  backoffBase: 500,
  backoffMax: 30_000,
  /** true: a 1008 (policy violation, e.g. over wsgate's messageRate) ends the connection for good. */
  stopOnPolicy: false,
  /** Give up after this many backoff reconnects in a row (a token that keeps being refused, say). */
  maxRetries: Infinity,
  /** A connection open this long (ms) ends the run of failures: the next backoff starts at backoffBase again. */
  stableAfter: 10_000,
  onopen: () => {},
  onmessage: () => {},
  onerror: () => {},
  /** Called with the close event and { reconnect, delay }: whether and in how many ms a new attempt follows. */
  onclose: () => {},
};

const between = (min, max) => min + Math.random() * (max - min);

export function connect(url, options = {}) {
  const o = { ...DEFAULTS, ...options };
  let socket = null;
  let timer = null;
  let stopped = false;
  let failures = 0;
  let openedAt = 0;

  async function open() {
    timer = null;
    let protocols;
    try {
      protocols = typeof o.protocols === 'function' ? await o.protocols() : o.protocols;
    } catch (err) {
      // No token today is a failure like any other: back off and ask again.
      o.onerror(err);
      return closed({ code: 1006, reason: 'protocols failed', wasClean: false });
    }
    if (stopped) return;
    socket = new WebSocket(url, protocols);
    socket.onopen = (event) => {
      openedAt = Date.now();
      o.onopen(event);
    };
    socket.onmessage = (event) => o.onmessage(event);
    socket.onerror = (event) => o.onerror(event);
    socket.onclose = (event) => closed(event);
  }

  function closed(event) {
    socket = null;
    if (openedAt !== 0 && Date.now() - openedAt >= o.stableAfter) failures = 0;
    openedAt = 0;
    const delay = stopped ? undefined : nextDelay(event.code);
    o.onclose(event, { reconnect: delay !== undefined, delay });
    if (delay !== undefined) timer = setTimeout(open, delay);
  }

  function nextDelay(code) {
    if (RESTART.has(code)) return between(o.restartJitter[0], o.restartJitter[1]);
    if (!BACKOFF.has(code) || (code === 1008 && o.stopOnPolicy) || failures >= o.maxRetries) return undefined;
    failures++;
    const ceiling = Math.min(o.backoffMax, o.backoffBase * 2 ** (failures - 1));
    return between(ceiling / 2, ceiling);
  }

  void open();
  return {
    /** Sends on the open connection; false (nothing sent) while there is none. */
    send(data) {
      if (socket === null || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(data);
      return true;
    },
    /** Closes for good: a pending reconnect is called off. */
    close(code = 1000, reason = '') {
      stopped = true;
      clearTimeout(timer);
      if (socket !== null) socket.close(code, reason);
    },
    /** The current WebSocket (null between attempts), for readyState, protocol or bufferedAmount. */
    get socket() {
      return socket;
    },
  };
}
