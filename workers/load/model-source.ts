/**
 * What the studio's model choice (a preset, a hub repo, dropped files) means for loading: where
 * the files are, the name a PEFT config gives the base model, the identity its quantized copy is
 * cached under, and the source a run records so that resuming finds the same base.
 */
import type { ModelSource } from '../protocol';
import type { HubClient } from './hub';
import { presetNamed } from './presets';
import { hubFileSet, localFileSet, urlFileSet, type ModelFileSet } from './sources';

export interface ModelFiles {
  files: ModelFileSet;
  baseModel: string;
  /** None for dropped files; a hub revision is resolved to its commit when the model loads. */
  cacheId: { repo: string; revision: string } | null;
}

/** `origin`: where the studio is served (the built-in demo model lives under it). */
export function filesFor(source: ModelSource, client: HubClient, origin: string): ModelFiles {
  if (source.kind === 'preset') {
    const preset = presetNamed(source.name);
    if (!preset) throw new Error(`unknown preset "${source.name}"`);
    if (preset.model.kind === 'hub') {
      const { repo } = preset.model;
      const revision = source.revision ?? preset.model.revision;
      return { files: hubFileSet(client, repo, revision), baseModel: repo, cacheId: { repo, revision } };
    }
    // The demo model ships with the studio; in the repository it lives under public/.
    return {
      files: urlFileSet(client, new URL(preset.model.baseUrl, origin).href),
      baseModel: `public${preset.model.baseUrl.replace(/\/$/, '')}`,
      cacheId: { repo: `studio/${preset.name}`, revision: preset.model.revision ?? preset.model.baseUrl },
    };
  }
  if (source.kind === 'hub') {
    const revision = source.revision ?? 'main';
    return { files: hubFileSet(client, source.id, revision), baseModel: source.id, cacheId: { repo: source.id, revision } };
  }
  const folder = source.files[0]?.webkitRelativePath.split('/')[0] || 'local model';
  return { files: localFileSet(source.files, folder), baseModel: folder, cacheId: null };
}

/**
 * The source a run resumes from: the one it started with, at the commit the base was loaded at,
 * so an update of the hub repo after the run started cannot change the base under a half-trained
 * adapter. Dropped files cannot be read again after a reload; the run names the folder as a hub id.
 */
export function pinnedSource(source: ModelSource, baseModel: string, commit: string | null): Extract<ModelSource, { kind: 'preset' | 'hub' }> {
  if (source.kind === 'local') return { kind: 'hub', id: baseModel };
  return commit ? { ...source, revision: commit } : source;
}
