import { useEffect, useState } from 'react';
import type { DashboardEvent, Frame, Hello } from '../../src/up/dashboard/protocol.js';
import { Ring } from './history.js';

/**
 * live: a hello arrived and frames flow; connecting: no hello yet; reconnecting: the stream broke and
 * EventSource (or we) are trying again; refused: the server speaks another protocol version.
 */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'refused';

export interface StreamState {
  connection: ConnectionState;
  hello: Hello | null;
  /** Oldest first, at most hello.historyLength. */
  frames: Frame[];
  /** Oldest first, at most MAX_EVENTS. */
  events: DashboardEvent[];
  /** Why the page stopped listening, when it did. */
  problem: string | null;
}

/** The event log keeps this many entries. */
export const MAX_EVENTS = 500;
/** EventSource retries by itself after a dropped connection, but not after an HTTP error; then we do. */
const REOPEN_DELAY_MS = 2000;
const PROTOCOL_VERSION = 1;

const INITIAL: StreamState = { connection: 'connecting', hello: null, frames: [], events: [], problem: null };

function parse<T>(data: unknown): T | null {
  if (typeof data !== 'string') return null;
  try {
    return JSON.parse(data) as T;
  } catch {
    return null;
  }
}

/**
 * Subscribes to the dashboard's Server-Sent Events. Every `hello` (once per connection, so after each
 * reconnect too) replaces what the page holds; every `frame` is appended to a ring of
 * hello.historyLength frames and its events to a ring of MAX_EVENTS.
 */
export function useStream(url = 'api/stream'): StreamState {
  const [state, setState] = useState<StreamState>(INITIAL);

  useEffect(() => {
    // The rings live outside React state and are copied out on each change, so a render never sees
    // a half-updated ring.
    const frames = new Ring<Frame>(1);
    const events = new Ring<DashboardEvent>(MAX_EVENTS);
    let hello: Hello | null = null;
    let lastEventId = 0;
    let source: EventSource | null = null;
    let reopenTimer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;

    const publish = (connection: ConnectionState, problem: string | null = null): void => {
      setState({ connection, hello, frames: frames.toArray(), events: events.toArray(), problem });
    };

    const addEvents = (list: readonly DashboardEvent[]): void => {
      for (const e of list) {
        if (e.id <= lastEventId) continue;
        events.push(e);
        lastEventId = e.id;
      }
    };

    const onHello = (message: MessageEvent): void => {
      const next = parse<Hello>(message.data);
      if (next === null || !Array.isArray(next.nodes)) return;
      if (next.version !== PROTOCOL_VERSION) {
        stopped = true;
        source?.close();
        publish('refused', `the dashboard server speaks protocol version ${String(next.version)}; this page speaks ${PROTOCOL_VERSION}. Rebuild the web app (npm run build:web).`);
        return;
      }
      hello = next;
      frames.reset(Math.max(1, next.historyLength));
      for (const f of next.frames) frames.push(f);
      events.reset();
      lastEventId = 0;
      addEvents(next.events);
      publish('live');
    };

    const onFrame = (message: MessageEvent): void => {
      if (hello === null) return;
      const frame = parse<Frame>(message.data);
      if (frame === null || typeof frame.t !== 'number') return;
      frames.push(frame);
      addEvents(frame.events ?? []);
      publish('live');
    };

    const open = (): void => {
      if (stopped) return;
      const es = new EventSource(url);
      source = es;
      es.addEventListener('hello', onHello);
      es.addEventListener('frame', onFrame);
      es.onerror = () => {
        if (stopped) return;
        if (es.readyState === EventSource.CLOSED) {
          es.close();
          reopenTimer = setTimeout(open, REOPEN_DELAY_MS);
        }
        publish(hello === null ? 'connecting' : 'reconnecting');
      };
    };

    open();
    return () => {
      stopped = true;
      clearTimeout(reopenTimer);
      source?.close();
    };
  }, [url]);

  return state;
}
