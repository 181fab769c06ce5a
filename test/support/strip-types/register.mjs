/**
 * `node --import ./register.mjs file.ts`: runs TypeScript the way Node >= 22.18 does by
 * default (type stripping), on a Node without it. Only the types are removed (TypeScript's
 * transpileModule with verbatimModuleSyntax); resolution is Node's own ESM resolution — no
 * extension guessing, no tsconfig paths, no CommonJS named-export interop beyond Node's — so
 * code that runs here runs on the station's Node without tsx.
 */
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
