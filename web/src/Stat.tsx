import type { ReactNode } from 'react';

export interface StatProps {
  label: string;
  value: ReactNode;
  testId?: string;
  /** The raw number behind `value`, for tests and tooling (data-value). */
  raw?: number | string | null;
  /** Draws attention (an error rate above zero, a stopped worker). */
  tone?: 'normal' | 'warn' | 'bad';
}

/** A big number with its label. Use inside <Stats>. */
export function Stat({ label, value, testId, raw, tone = 'normal' }: StatProps) {
  return (
    <div className={`stat tone-${tone}`}>
      <dt>{label}</dt>
      <dd data-testid={testId} data-value={raw === undefined || raw === null ? undefined : String(raw)}>
        {value}
      </dd>
    </div>
  );
}

export function Stats({ children }: { children: ReactNode }) {
  return <dl className="stats">{children}</dl>;
}
