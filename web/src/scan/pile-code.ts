/**
 * The code printed on each pile (as a QR code and as text), naming the station's gateway and
 * the connector. Two spellings are accepted:
 *
 *   https://<app host>/#/pile/<gatewayId>/<connector>   (a phone's camera app opens the PWA)
 *   pilepass:<gatewayId>/<connector>                    (short, for manual entry)
 *
 * Gateway ids follow the protocol (1–32 of A–Z a–z 0–9 . _ -); connectors 0–255.
 * @module
 */

export interface PileCode {
  readonly gatewayId: string;
  readonly connector: number;
}

export class PileCodeError extends Error {
  override readonly name = 'PileCodeError';
}

const GATEWAY = '[A-Za-z0-9._-]{1,32}';
const SHORT = new RegExp(`^pilepass:(${GATEWAY})/(\\d{1,3})$`, 'i');
const URL_PATH = new RegExp(`^#?/pile/(${GATEWAY})/(\\d{1,3})/?$`);

function build(gatewayId: string, connectorText: string): PileCode {
  const connector = Number(connectorText);
  if (!Number.isInteger(connector) || connector > 255) throw new PileCodeError('connector must be 0–255');
  return { gatewayId, connector };
}

/** Parses a scanned or typed pile code. Throws PileCodeError with the reason. */
export function parsePileCode(text: string): PileCode {
  const input = text.trim();
  const short = SHORT.exec(input);
  if (short) return build(short[1] as string, short[2] as string);
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new PileCodeError('not a PilePass pile code');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new PileCodeError('not a PilePass pile code');
  const path = URL_PATH.exec(url.hash) ?? URL_PATH.exec(url.pathname);
  if (!path) throw new PileCodeError('not a PilePass pile code');
  return build(path[1] as string, path[2] as string);
}

/** The canonical text to print on a pile (what the QR code holds). */
export function formatPileCode(origin: string, code: PileCode): string {
  return `${origin.replace(/\/$/, '')}/#/pile/${code.gatewayId}/${code.connector}`;
}
