/** The cloud as a separate process: product tooling in scripts/station, shared with npm start. */
export * from '../../scripts/station/cloud-process.ts';
