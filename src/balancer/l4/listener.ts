/**
 * Starts a `mode: tcp` or `mode: udp` listener as a ServerHandle, so startBalancer treats it like
 * its HTTP listeners: same address reporting, same close(). TCP goes through core's listen(): on
 * close it stops accepting, lets relayed connections finish for timeouts.drain, then cuts them.
 * UDP has nothing to drain: close() ends every flow and releases its backend at once.
 */
import { listen, type ServerHandle } from '../../core/lifecycle.js';
import type { ListenerConfig } from '../config.js';
import { TcpListener, type L4Deps } from './tcp.js';
import { UdpListener } from './udp.js';

export async function startL4Listener(lc: ListenerConfig, deps: L4Deps, drainTimeoutMs: number): Promise<ServerHandle> {
  if (lc.mode === 'udp') {
    const udp = new UdpListener(lc, deps);
    try {
      return { address: await udp.listen(), close: () => udp.close() };
    } catch (err) {
      await udp.close();
      throw err;
    }
  }
  const tcp = new TcpListener(lc, deps);
  const handle = await listen(tcp.server, { host: lc.host, port: lc.port, drainTimeoutMs });
  return {
    address: handle.address,
    close: () => {
      tcp.shutdown();
      return handle.close();
    },
  };
}
