import type { Health } from '../../src/up/dashboard/protocol.js';

/** Before the first frame a node's health is not known yet. */
export type ShownHealth = Health | 'unknown';

/** A glyph per health, so the state reads without its colour. */
export const HEALTH_GLYPH: Record<ShownHealth, string> = {
  up: '●',
  degraded: '▲',
  down: '✕',
  stopped: '■',
  idle: '○',
  unknown: '…',
};

/** Backend states from the balancer's admin API, mapped to the same colours as node health. */
export function backendTone(state: string): ShownHealth {
  switch (state) {
    case 'up':
      return 'up';
    case 'down':
    case 'ejected':
      return 'down';
    case 'draining':
      return 'degraded';
    case 'disabled':
      return 'stopped';
    default:
      return 'unknown';
  }
}
