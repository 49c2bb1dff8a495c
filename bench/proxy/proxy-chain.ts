/** The proxy-chain npm package (Apify) as a peer, defaults but for the port. Prints {"ready":true,"port":N} or {"unavailable":why}. */
import { printLine } from './procs.js';

try {
  const name = 'proxy-chain';
  const mod = (await import(name)) as { Server: new (o: { port: number; host: string; verbose: boolean }) => { listen(): Promise<void>; port: number; close(force: boolean): Promise<void> } };
  const server = new mod.Server({ port: 0, host: '127.0.0.1', verbose: false });
  await server.listen();
  printLine({ ready: true, port: server.port });
  process.on('SIGTERM', () => {
    void server.close(true).then(() => process.exit(0));
  });
} catch (err) {
  const code = (err as { code?: string }).code;
  printLine({ unavailable: code === 'ERR_MODULE_NOT_FOUND' ? 'not installed: npm install --no-save proxy-chain' : String((err as Error).message) });
}
