import { useCallback, useEffect, useRef, useState } from 'react';
import type { Control, ControlResult } from '../../src/up/dashboard/protocol.js';

export interface ControlOutcome {
  ok: boolean;
  /** The server's message, or "CODE: message" for a refusal. */
  message: string;
  /** Epoch ms when the answer came. */
  at: number;
}

export interface Controller {
  /** Sends `control` unless a request under the same `key` is still in flight; resolves to whether it was accepted. */
  send: (key: string, control: Control) => Promise<boolean>;
  /** Keys of the requests in flight (a button disables itself while its key is here). */
  pending: ReadonlySet<string>;
  /** The answer to the last request, for the status line. */
  last: ControlOutcome | null;
}

interface ErrorBody {
  error?: { code?: string; message?: string };
}

async function post(control: Control): Promise<ControlOutcome> {
  let response: Response;
  try {
    response = await fetch('api/control', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(control),
    });
  } catch (err) {
    return { ok: false, message: `could not reach the dashboard server (${err instanceof Error ? err.message : String(err)})`, at: Date.now() };
  }
  const body: unknown = await response.json().catch(() => null);
  if (response.ok) {
    const message = (body as Partial<ControlResult> | null)?.message;
    return { ok: true, message: typeof message === 'string' ? message : `${control.action}: done`, at: Date.now() };
  }
  const error = (body as ErrorBody | null)?.error;
  const text = error?.message ?? `HTTP ${response.status}`;
  return { ok: false, message: error?.code === undefined ? text : `${error.code}: ${text}`, at: Date.now() };
}

/** POSTs controls to /api/control and remembers what is in flight and how the last one went. */
export function useControl(): Controller {
  const [pending, setPending] = useState<ReadonlySet<string>>(new Set());
  const [last, setLast] = useState<ControlOutcome | null>(null);
  // The state above renders; this ref refuses a double click before the re-render lands.
  const inFlight = useRef(new Set<string>());

  const send = useCallback(async (key: string, control: Control): Promise<boolean> => {
    if (inFlight.current.has(key)) return false;
    inFlight.current.add(key);
    setPending(new Set(inFlight.current));
    try {
      const outcome = await post(control);
      setLast(outcome);
      return outcome.ok;
    } finally {
      inFlight.current.delete(key);
      setPending(new Set(inFlight.current));
    }
  }, []);

  return { send, pending, last };
}

/** How long a requested value is shown before the frames must have caught up with it. */
const REQUESTED_HOLD_MS = 5000;

/**
 * A control's displayed value: what the user just asked for until the frames report it (or the
 * request fails, or REQUESTED_HOLD_MS pass), then the value the frames report. Keeps a select or a
 * toggle from jumping back for the second until the next frame.
 */
export function useRequested<T>(current: T): [shown: T, request: (value: T) => void, settle: () => void] {
  const [requested, setRequested] = useState<{ value: T } | null>(null);

  useEffect(() => {
    if (requested === null) return;
    if (Object.is(requested.value, current)) {
      setRequested(null);
      return;
    }
    const timer = setTimeout(() => setRequested(null), REQUESTED_HOLD_MS);
    return () => clearTimeout(timer);
  }, [requested, current]);

  const request = useCallback((value: T) => setRequested({ value }), []);
  const settle = useCallback(() => setRequested(null), []);
  return [requested === null ? current : requested.value, request, settle];
}
