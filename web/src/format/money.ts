/**
 * Display of money and energy. Amounts stay integer minor units everywhere; only this file
 * turns them into text, with the currency's own number of minor digits (Intl knows JPY has 0).
 * @module
 */

function minorDigits(currency: string): number {
  try {
    return (
      new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ??
      2
    );
  } catch {
    return 2;
  }
}

/** `1234, 'EUR'` → "€12.34" (en) / "€12.34" (zh-CN); never a float in between. */
export function formatMoney(minor: number, currency: string, locale: string): string {
  const digits = minorDigits(currency);
  const negative = minor < 0;
  const abs = Math.abs(minor);
  const scale = 10 ** digits;
  const whole = Math.trunc(abs / scale);
  const frac = abs % scale;
  // Build the decimal string exactly, then let Intl place symbol and separators.
  const decimal = digits === 0 ? `${whole}` : `${whole}.${String(frac).padStart(digits, '0')}`;
  try {
    const text = new Intl.NumberFormat(locale, {
      style: 'currency',
      currency,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    }).format(decimal as unknown as number);
    return negative ? `-${text}` : text;
  } catch {
    return `${negative ? '-' : ''}${decimal} ${currency}`;
  }
}

/** Parses what a person typed ("12", "12.5", "12,50") into minor units, or undefined. */
export function parseMoney(text: string, currency: string): number | undefined {
  const digits = minorDigits(currency);
  const m = /^\s*(\d{1,9})(?:[.,](\d*))?\s*$/.exec(text);
  if (!m) return undefined;
  const frac = m[2] ?? '';
  if (frac.length > digits) return undefined;
  return Number(m[1]) * 10 ** digits + Number(frac.padEnd(digits, '0') || '0');
}

/** Integer Wh → "12.345 kWh". */
export function formatEnergy(wh: number): string {
  const kwh = Math.trunc(wh / 1000);
  return `${kwh}.${String(Math.abs(wh % 1000)).padStart(3, '0')} kWh`;
}

/** Seconds → "1:02:03" or "2:03". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.trunc(seconds));
  const h = Math.trunc(s / 3600);
  const m = Math.trunc((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** A tariff (1/10,000 minor unit per kWh / per minute) as minor units per kWh, rounded. */
export function pricePerKwh(tariff: { energyPrice: number; serviceFee: number }): number {
  return Math.round((tariff.energyPrice + tariff.serviceFee) / 10_000);
}
