// Placeholder until the frame-aware relay lands: behaves as a tunnel.
export { Tunnel as InspectRelay } from './tunnel.js';
