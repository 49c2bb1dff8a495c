import type { ReactNode } from 'react';

export interface PanelProps {
  /** Element id prefix; the heading gets `${id}-title`. */
  id: string;
  title: string;
  /** Short text after the title ("round-robin", "memory · cache-aside"). */
  note?: string;
  className?: string;
  children: ReactNode;
}

/** A titled box of the dashboard grid; a landmark named by its heading. */
export function Panel({ id, title, note, className, children }: PanelProps) {
  return (
    <section className={`panel${className === undefined ? '' : ` ${className}`}`} id={id} aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>
        {title}
        {note === undefined || note === '' ? null : <span className="panel-note"> {note}</span>}
      </h2>
      {children}
    </section>
  );
}
