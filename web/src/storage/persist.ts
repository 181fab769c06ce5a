/**
 * Asks the browser to keep PilePass's storage under pressure (`navigator.storage.persist()`).
 * Eviction would destroy unused vouchers (their keys cannot be exported or recovered) and
 * receipts not yet uploaded, so a refusal is shown to the driver rather than ignored.
 * @module
 */

export type PersistResult = 'persisted' | 'refused' | 'unsupported';

export async function requestPersistentStorage(
  storage: Pick<StorageManager, 'persist' | 'persisted'> | undefined = globalThis.navigator?.storage,
): Promise<PersistResult> {
  if (!storage?.persist) return 'unsupported';
  try {
    if (await storage.persisted()) return 'persisted';
    return (await storage.persist()) ? 'persisted' : 'refused';
  } catch {
    return 'refused';
  }
}
