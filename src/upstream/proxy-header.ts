import { isIP } from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const PROXY_COMMAND = 0x21; // version 2, PROXY
const TCP4 = 0x11;
const TCP6 = 0x21;

/** One end of a connection, for the PROXY header. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * A PROXY protocol v2 header telling an upstream who the client is
 * (`source`) and which gateway address it connected to (`destination`).
 * Mixed families are sent as IPv6 (IPv4 mapped); an address that is not an
 * IP at all makes an UNSPEC header, which tells the upstream to use the
 * connection's own addresses.
 */
export function encodeProxyV2(source: Endpoint, destination: Endpoint): Buffer {
  let src = unmap(source.address);
  let dst = unmap(destination.address);
  let sf = isIP(src);
  let df = isIP(dst);
  if (sf === 0 || df === 0) return header(0x20, Buffer.alloc(0));
  if (sf !== df) {
    if (sf === 4) src = `::ffff:${src}`;
    if (df === 4) dst = `::ffff:${dst}`;
    sf = df = 6;
  }
  if (sf === 4) {
    const body = Buffer.alloc(12);
    writeV4(body, 0, src);
    writeV4(body, 4, dst);
    body.writeUInt16BE(source.port & 0xffff, 8);
    body.writeUInt16BE(destination.port & 0xffff, 10);
    return header(TCP4, body);
  }
  const body = Buffer.alloc(36);
  writeV6(body, 0, src);
  writeV6(body, 16, dst);
  body.writeUInt16BE(source.port & 0xffff, 32);
  body.writeUInt16BE(destination.port & 0xffff, 34);
  return header(TCP6, body);
}

function header(family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16);
  SIGNATURE.copy(head, 0);
  head[12] = PROXY_COMMAND;
  head[13] = family === 0x20 ? 0x00 : family;
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

function unmap(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function writeV4(buf: Buffer, at: number, address: string): void {
  const parts = address.split('.');
  for (let i = 0; i < 4; i++) buf[at + i] = Number(parts[i]);
}

function writeV6(buf: Buffer, at: number, address: string): void {
  const zone = address.indexOf('%');
  let a = zone === -1 ? address : address.slice(0, zone);
  // A dotted IPv4 tail ("::ffff:1.2.3.4") is two groups.
  const lastColon = a.lastIndexOf(':');
  const tail = a.slice(lastColon + 1);
  if (tail.includes('.')) {
    const p = tail.split('.').map(Number);
    a = `${a.slice(0, lastColon + 1)}${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const gap = a.indexOf('::');
  const head =
    gap === -1
      ? a.split(':')
      : a
          .slice(0, gap)
          .split(':')
          .filter((g) => g !== '');
  const rest =
    gap === -1
      ? []
      : a
          .slice(gap + 2)
          .split(':')
          .filter((g) => g !== '');
  const groups = gap === -1 ? head : [...head, ...new Array<string>(8 - head.length - rest.length).fill('0'), ...rest];
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(parseInt(groups[i] ?? '0', 16), at + i * 2);
}
