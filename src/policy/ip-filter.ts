import { BlockList, isIP } from 'node:net';

/**
 * Allow and deny lists of addresses and CIDRs, IPv4 and IPv6. Deny wins; a
 * non-empty allow list admits only what it lists. An IPv4-mapped IPv6 address
 * (::ffff:10.0.0.1, what a dual-stack socket reports) is checked as IPv4.
 */
export class IpFilter {
  readonly #allow: BlockList | undefined;
  readonly #deny: BlockList | undefined;

  private constructor(allow: readonly string[], deny: readonly string[]) {
    this.#allow = allow.length === 0 ? undefined : blockList(allow);
    this.#deny = deny.length === 0 ? undefined : blockList(deny);
  }

  /** undefined when both lists are empty: nothing to check. */
  static from(allow: readonly string[], deny: readonly string[]): IpFilter | undefined {
    return allow.length === 0 && deny.length === 0 ? undefined : new IpFilter(allow, deny);
  }

  allows(address: string): boolean {
    const plain = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
    const family = isIP(plain);
    // Not an address at all (a garbled forwarded header): it cannot be on an allow list.
    if (family === 0) return this.#allow === undefined;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (this.#deny !== undefined && this.#deny.check(plain, type)) return false;
    return this.#allow === undefined || this.#allow.check(plain, type);
  }
}

function blockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr = '', bits] = entry.split('/');
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}
