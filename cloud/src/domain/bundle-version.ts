/**
 * The one counter bundle versions come from: every bundle is newer than every bundle before
 * it, whichever station it is for, so a gateway can refuse anything older than it has.
 * @module
 */

import type { Queryable } from '../db/database.ts';

export async function currentBundleVersion(q: Queryable): Promise<number> {
  const row = await q.maybeOne<{ version: number }>(
    "SELECT version FROM bundle_versions WHERE id = 'global'",
  );
  return row?.version ?? 0;
}

export async function nextBundleVersion(q: Queryable): Promise<number> {
  await q.execute(
    "INSERT INTO bundle_versions (id, version) VALUES ('global', 0) ON CONFLICT (id) DO NOTHING",
  );
  const row = await q.one<{ version: number }>(
    "UPDATE bundle_versions SET version = version + 1 WHERE id = 'global' RETURNING version",
  );
  return row.version;
}
