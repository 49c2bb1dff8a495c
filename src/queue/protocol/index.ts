/** The archlab queue wire protocol (docs/queue-protocol.md): frames, payload codecs, batched writes. */
export {
  PROTOCOL_VERSION,
  FRAME_HEADER_BYTES,
  MIN_FRAME_LENGTH,
  DEFAULT_MAX_FRAME_BYTES,
  MAX_MAX_FRAME_BYTES,
  RESPONSE_BIT,
  FrameType,
  REQUEST_TYPES,
  FrameDecoder,
  frameHeader,
  encodeFrame,
  frameTypeName,
} from './frame.js';
export type { Frame, FrameTypeName } from './frame.js';
export { PayloadReader, PayloadWriter, MAX_STRING_BYTES } from './codec.js';
export * from './messages.js';
export { FrameWriter } from './writer.js';
