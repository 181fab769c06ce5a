/** Real Chromium for browser tests: product tooling in scripts/station, shared with npm start. */
export * from '../../scripts/station/chromium.ts';
