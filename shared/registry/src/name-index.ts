// An index from a key (a domain) to the names (services) listed under it, as the replicas' and
// the API's views of the registry both keep.

export function addToIndex(index: Map<string, Set<string>>, key: string, name: string): void {
  let names = index.get(key);
  if (!names) index.set(key, (names = new Set()));
  names.add(name);
}

/** Removes `name` from `key`, and the key once no name is left. */
export function removeFromIndex(index: Map<string, Set<string>>, key: string, name: string): void {
  const names = index.get(key);
  names?.delete(name);
  if (names?.size === 0) index.delete(key);
}
