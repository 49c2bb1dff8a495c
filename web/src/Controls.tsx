import { useEffect, useLayoutEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import type { Control, Frame, Hello } from '../../src/up/dashboard/protocol.js';
import { fmtClock, fmtRemaining } from './format.js';
import { HealthBadge } from './HealthBadge.js';
import type { ShownHealth } from './health.js';
import { Panel } from './Panel.js';
import { useRequested, type Controller } from './useControl.js';

/**
 * A control that is disabled while its request is in flight loses keyboard focus in some browsers;
 * this puts focus back when it is enabled again, if it had it.
 */
function useFocusAcrossBusy<T extends HTMLElement>(busy: boolean) {
  const ref = useRef<T>(null);
  const hadFocus = useRef(false);
  useLayoutEffect(() => {
    const el = ref.current;
    if (el === null) return;
    if (busy) {
      hadFocus.current = document.activeElement === el;
    } else if (hadFocus.current) {
      hadFocus.current = false;
      if (document.activeElement === null || document.activeElement === document.body || document.activeElement === el) el.focus();
    }
  }, [busy]);
  return ref;
}

interface ActionButtonProps {
  /** The test id and the in-flight key. */
  id: string;
  controller: Controller;
  /** The control to send, or a function that sends it (and may do more before or after). */
  control: Control | (() => Promise<unknown>);
  pressed?: boolean;
  className?: string;
  children: ReactNode;
}

function ActionButton({ id, controller, control, pressed, className, children }: ActionButtonProps) {
  const busy = controller.pending.has(id);
  const ref = useFocusAcrossBusy<HTMLButtonElement>(busy);
  const onClick = () => {
    if (typeof control === 'function') void control();
    else void controller.send(id, control);
  };
  return (
    <button ref={ref} type="button" data-testid={id} className={className} disabled={busy} aria-pressed={pressed} aria-busy={busy || undefined} onClick={onClick}>
      {children}
    </button>
  );
}

interface ChoiceSelectProps {
  id: string;
  label: string;
  choices: readonly string[];
  /** The value the last frame reports; undefined before the first frame. */
  current: string | undefined;
  controller: Controller;
  toControl: (value: string) => Control;
  /** How a choice is shown. Default: as it is. */
  labelOf?: (value: string) => string;
}

function ChoiceSelect({ id, label, choices, current, controller, toControl, labelOf = (v) => v }: ChoiceSelectProps) {
  const [shown, request, settle] = useRequested(current ?? '');
  const busy = controller.pending.has(id);
  const ref = useFocusAcrossBusy<HTMLSelectElement>(busy);
  const options = shown === '' || choices.includes(shown) ? choices : [...choices, shown];
  const onChange = async (value: string) => {
    request(value);
    if (!(await controller.send(id, toControl(value)))) settle();
  };
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select ref={ref} id={id} data-testid={id} value={shown} disabled={busy} onChange={(e) => void onChange(e.target.value)}>
        {shown === '' ? (
          <option value="" disabled>
            —
          </option>
        ) : null}
        {options.map((c) => (
          <option key={c} value={c}>
            {labelOf(c)}
          </option>
        ))}
      </select>
    </div>
  );
}

interface CutToggleProps {
  id: 'cut-cache' | 'cut-database';
  label: string;
  cut: boolean;
  controller: Controller;
}

/** A toggle button (aria-pressed) that cuts the app instances off from the cache or the database. */
function CutToggle({ id, label, cut, controller }: CutToggleProps) {
  const [shown, request, settle] = useRequested(cut);
  const toggle = async () => {
    const next = !shown;
    request(next);
    if (!(await controller.send(id, { action: id, cut: next }))) settle();
  };
  return (
    <div className="toggle-row">
      <ActionButton id={id} controller={controller} control={toggle} pressed={shown} className="toggle">
        {label}
      </ActionButton>
      <span className={shown ? 'state-bad' : 'state-ok'}>{shown ? 'cut off' : 'connected'}</span>
    </div>
  );
}

function RateForm({ baseRate, controller }: { baseRate: number | undefined; controller: Controller }) {
  const [text, setText] = useState('');
  // Follows the running rate until the user types; after a successful Set it follows again.
  const [editing, setEditing] = useState(false);
  const busy = controller.pending.has('set-rate');
  const buttonRef = useFocusAcrossBusy<HTMLButtonElement>(busy);
  useEffect(() => {
    if (!editing && baseRate !== undefined) setText(String(Math.round(baseRate * 100) / 100));
  }, [baseRate, editing]);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const rate = Number(text);
    if (text.trim() === '' || !Number.isFinite(rate) || rate < 0) return;
    if (await controller.send('set-rate', { action: 'set-rate', rate })) setEditing(false);
  };
  return (
    <form className="rate-form" onSubmit={(e) => void submit(e)}>
      <div className="field">
        <label htmlFor="rate">Client rate (req/s)</label>
        <input
          id="rate"
          data-testid="rate"
          type="number"
          inputMode="decimal"
          min={0}
          step="any"
          required
          value={text}
          onChange={(e) => {
            setEditing(true);
            setText(e.target.value);
          }}
        />
      </div>
      <button ref={buttonRef} type="submit" data-testid="set-rate" disabled={busy} aria-busy={busy || undefined}>
        Set
      </button>
    </form>
  );
}

function appHealth(frame: Frame | null, app: string): { health: ShownHealth; text: string } {
  const node = frame?.nodes[app];
  const backend = frame?.balancer.backends.find((b) => b.id === app);
  if (node === undefined) return { health: 'unknown', text: 'unknown' };
  return { health: node.health, text: backend === undefined || backend.state === node.health ? node.health : `${node.health}, balancer: ${backend.state}` };
}

export interface ControlsProps {
  hello: Hello;
  frame: Frame | null;
  controller: Controller;
}

/** Everything that changes the running system; the effect shows in the graph and the panels within a frame or two. */
export function Controls({ hello, frame, controller }: ControlsProps) {
  const { apps, algorithms, strategies, spike } = hello.choices;
  const activeSpike = frame?.clients.spike ?? null;
  const last = controller.last;
  return (
    <Panel id="controls" title="Controls" className="controls">
      <fieldset>
        <legend>App instances</legend>
        <ul className="app-list">
          {apps.map((app) => {
            const h = appHealth(frame, app);
            return (
              <li key={app}>
                <span className="app-name">{app}</span>
                <HealthBadge health={h.health} text={h.text} />
                <span className="buttons">
                  <ActionButton id={`kill-app-${app}`} controller={controller} control={{ action: 'kill-app', app }} className="danger">
                    Kill<span className="visually-hidden"> {app}</span>
                  </ActionButton>
                  <ActionButton id={`restart-app-${app}`} controller={controller} control={{ action: 'restart-app', app }}>
                    Restart<span className="visually-hidden"> {app}</span>
                  </ActionButton>
                </span>
              </li>
            );
          })}
        </ul>
      </fieldset>

      <fieldset>
        <legend>Balancer and cache</legend>
        <ChoiceSelect id="algorithm" label="Balancer algorithm" choices={algorithms} current={frame?.balancer.algorithm} controller={controller} toControl={(algorithm) => ({ action: 'set-algorithm', algorithm })} />
        <ChoiceSelect id="cache-strategy" label="Cache strategy" choices={strategies} current={frame?.cache.strategy} controller={controller} toControl={(strategy) => ({ action: 'set-cache-strategy', strategy })} />
      </fieldset>

      <fieldset>
        <legend>Faults</legend>
        <CutToggle id="cut-cache" label="Cut cache" cut={frame?.cache.cut ?? false} controller={controller} />
        <CutToggle id="cut-database" label="Cut database" cut={frame?.database.cut ?? false} controller={controller} />
      </fieldset>

      <fieldset>
        <legend>Payments (third party, behind the forward proxy)</legend>
        <ChoiceSelect
          id="payments-failure-rate"
          label="Charges it fails"
          choices={hello.choices.paymentsFailureRates.map(String)}
          current={frame === null ? undefined : String(frame.payments.failureRate)}
          controller={controller}
          toControl={(v) => ({ action: 'set-payments-failure-rate', rate: Number(v) })}
          labelOf={(v) => `${Math.round(Number(v) * 100)}%`}
        />
        <ChoiceSelect
          id="payments-latency"
          label="Its latency"
          choices={hello.choices.paymentsLatenciesMs.map(String)}
          current={frame === null ? undefined : String(frame.payments.latencyMs)}
          controller={controller}
          toControl={(v) => ({ action: 'set-payments-latency', ms: Number(v) })}
          labelOf={(v) => `${v} ms`}
        />
      </fieldset>

      <fieldset>
        <legend>Traffic and CDN</legend>
        <div className="button-row">
          <ActionButton id="spike" controller={controller} control={{ action: 'spike', factor: spike.factor, seconds: spike.seconds }}>
            Spike {spike.factor}x for {spike.seconds} s
          </ActionButton>
          <ActionButton id="purge-cdn" controller={controller} control={{ action: 'purge-cdn' }}>
            Purge CDN
          </ActionButton>
        </div>
        <p className="hint">{activeSpike === null ? 'No spike running.' : `Spike ${activeSpike.factor}x running, ${fmtRemaining(activeSpike.remainingMs)} left.`}</p>
        <RateForm baseRate={frame?.clients.baseRate} controller={controller} />
      </fieldset>

      <fieldset>
        <legend>Queue worker</legend>
        <div className="button-row">
          <ActionButton id="stop-worker" controller={controller} control={{ action: 'stop-worker' }} className="danger">
            Stop worker
          </ActionButton>
          <ActionButton id="start-worker" controller={controller} control={{ action: 'start-worker' }}>
            Start worker
          </ActionButton>
          <span className={frame?.queue.workerRunning === false ? 'state-bad' : 'state-ok'}>
            {frame === null ? '' : frame.queue.workerRunning ? 'running' : 'stopped'}
          </span>
        </div>
      </fieldset>

      <p className={`control-status${last === null ? '' : last.ok ? ' ok' : ' failed'}`} role="status" aria-live="polite" data-testid="control-status" data-ok={last === null ? undefined : String(last.ok)}>
        {last === null ? 'No control used yet.' : `${fmtClock(last.at)} ${last.ok ? '✓' : '✕ refused:'} ${last.message}`}
      </p>
    </Panel>
  );
}
