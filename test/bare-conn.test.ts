import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { echo, eventually, openClient, simpleConfig, startBackend, startGateway } from './helpers.js';

// On plain listeners the gateway accepts connections as bare TCP handles and
// dials IP targets the same way (src/relay/bare-conn.ts): a session's two
// connections never become net.Sockets. What a user sees is the same
// gateway, only cheaper per handshake; every other suite checks the
// behaviour. This one checks that the sockets really are gone, and that a
// session's resources come back when it ends. test/stream-io.test.ts keeps
// the socket path tested (WSGATE_RELAY_IO=stream).

/** net.Sockets this process holds open (bare handles are not sockets). */
function netSockets(): number {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof Socket).length;
}

for (const mode of ['inspect', 'tunnel'] as const) {
  void describe(`${mode} mode on a plain listener`, () => {
    void it('relays 20 sessions with no net.Socket of the gateway, and lets everything go when they end', async () => {
      const backend = await startBackend();
      const gw = await startGateway(simpleConfig([backend.url], `relay: { mode: ${mode} }\nlimits: { perIp: { maxConnections: 20 } }`));
      try {
        const before = netSockets();
        const clients = await Promise.all(Array.from({ length: 20 }, () => openClient(gw.url)));
        await eventually(() => gw.gw.stats().sessions === 20, 5_000, '20 sessions');
        for (const [i, ws] of clients.entries()) assert.equal(await echo(ws, `message ${i}`), `message ${i}`);
        // This process holds the 20 clients and the backend's 20 connections:
        // 40 sockets. A gateway on sockets would add 40 more.
        const added = netSockets() - before;
        assert.ok(added <= 40, `${added} sockets for 20 sessions (40 are the test's own)`);
        for (const ws of clients) ws.close();
        await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'sessions back to 0');
        await eventually(() => netSockets() <= before, 5_000, 'sockets back to where they were');
        // The per-address count is released too: 20 new sessions from the same address are admitted.
        const again = await Promise.all(Array.from({ length: 20 }, () => openClient(gw.url)));
        for (const ws of again) ws.close();
      } finally {
        await gw.close();
        await backend.close();
      }
    });
  });
}
