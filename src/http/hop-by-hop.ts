/**
 * RFC 9110 §7.6.1: connection-specific fields a proxy must not forward, in
 * either direction. Headers named in a message's own Connection field are
 * hop-by-hop too; callers add those.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer']);
