/**
 * Shard names in `model.safetensors.index.json` come from the repository being loaded, and
 * each one becomes a hub URL or a lookup in a dropped folder. Only a plain file name of the
 * same repository and revision is accepted: no folders, no `..`, no absolute paths or URL
 * schemes, no percent-encoding (a `%2F` would become a `/` on a server that decodes twice).
 */

/** Why `name` is not a plain `.safetensors` file name, or null when it is one. */
export function shardNameProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'it is not a string';
  if (name.length === 0) return 'it is empty';
  if (name.length > 255) return 'it is longer than 255 characters';
  if (/[/\\]/.test(name)) return 'it is a path, not a plain file name';
  if (name.includes('..')) return 'it contains ".."';
  if (name.includes(':')) return 'it names a URL scheme or a drive';
  if (name.includes('%')) return 'it contains percent-encoding';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'it contains control characters';
  if (name.trim() !== name) return 'it starts or ends with white space';
  if (name.startsWith('.')) return 'it starts with a dot';
  if (!name.endsWith('.safetensors') || name === '.safetensors') return 'it is not a .safetensors file name';
  return null;
}

/** What to say of a refused entry, after the index file's name: the tensor and the entry. */
export function shardNameMessage(tensor: string, name: unknown, problem: string): string {
  return `weight_map entry "${tensor}" → ${JSON.stringify(name)} is not a plain file name of this repository (${problem})`;
}
