/**
 * The meter id as receipts carry it (docs/protocol.md: printable ASCII, 1–64 characters), as a
 * config schema shared by the hardware drivers' sections.
 * @module
 */

import { z } from 'zod';

export const meterIdSchema = z
  .string()
  .regex(/^[\x20-\x7e]{1,64}$/, 'meter id: 1–64 printable ASCII characters');
