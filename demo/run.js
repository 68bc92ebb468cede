// `npm start`: two echo backends and the gateway in front of them, in one
// process, from the built package (npm ci builds it). Ctrl-C stops all three.
import { fileURLToPath } from 'node:url';
import { createGateway, loadConfig } from '../dist/index.js';
import { startEchoServer } from '../dist/cli/echo.js';

const env = process.env;
const ports = [Number(env.WSGATE_DEMO_BACKEND_1 ?? 9001), Number(env.WSGATE_DEMO_BACKEND_2 ?? 9002)];
const backends = await Promise.all(ports.map((port) => startEchoServer({ host: '127.0.0.1', port })));
const config = await loadConfig(fileURLToPath(new URL('./wsgate.yaml', import.meta.url)));
const gateway = createGateway(config);
await gateway.start();
const { address, port } = gateway.addresses[0];
console.log(`
wsgate demo is up: ws://${address}:${port}/ → echo backends on ports ${ports.join(' and ')}
Try it from another terminal:
  node -e "const ws = new (require('ws'))('ws://${address}:${port}/'); ws.on('open', () => ws.send('hello')); ws.on('message', (m) => { console.log(String(m)); ws.close(); })"
Ctrl-C to stop.
`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    if (stopping) process.exit(1);
    stopping = true;
    await gateway.stop();
    await Promise.all(backends.map((b) => b.close()));
    process.exit(0);
  });
}
