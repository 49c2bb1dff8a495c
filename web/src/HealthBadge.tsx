import { HEALTH_GLYPH, type ShownHealth } from './health.js';

/** The health as glyph + word on its colour: never colour alone. */
export function HealthBadge({ health, text }: { health: ShownHealth; text?: string }) {
  return (
    <span className={`badge health-${health}`}>
      <span aria-hidden="true">{HEALTH_GLYPH[health]}</span> {text ?? health}
    </span>
  );
}
