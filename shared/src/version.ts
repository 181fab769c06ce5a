/**
 * Protocol versions. The gateway's hello states the highest version it speaks; the phone
 * answers with min(its own, the hello's); the voucher states the lowest version it may be
 * presented with, so a hello (or an attacker) cannot talk a phone down to a weaker one.
 * @module
 */

/** The version this build speaks. */
export const PROTOCOL_VERSION = 1;
/** The oldest version this build accepts. */
export const MIN_PROTOCOL_VERSION = 1;
