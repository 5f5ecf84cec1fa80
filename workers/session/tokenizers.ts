/**
 * The tokenizer of the model a run trains, by model source: a preset's (the demo's is served
 * by the studio itself), a hub repo's, or a dropped folder's tokenizer.json. Loaded once per model.
 * With an access token, a hub repo's tokenizer files are read through the hub client (which
 * sends the token to the hub's own hosts only), so gated models' tokenizers load too.
 */
import type { HubClient } from '../load/hub';
import { presetNamed, type Preset } from '../load/presets';
import type { ModelSource } from '../protocol';
import { tokenizerFromFiles, tokenizerFromHub, tokenizerFromHubFiles, tokenizerFromUrl, type TextTokenizer } from '../tokenizer';
import { EngineError } from '../errors';

/** A preset's tokenizer; `origin` is where the studio is served (the demo's files live under it). */
export function presetTokenizer(preset: Preset, origin: string, hub?: HubClient): Promise<TextTokenizer> {
  const location = preset.tokenizer;
  return location.kind === 'url' ? tokenizerFromUrl(new URL(location.baseUrl, origin).href) : hubTokenizer(location.repo, location.revision, hub);
}

/**
 * A hub repo's tokenizer: through `hub` when it carries an access token (tokenizer.json and
 * tokenizer_config.json read by the hub client), otherwise through transformers' AutoTokenizer
 * (which sends no token from a page); the same tokenizer class either way.
 */
export async function hubTokenizer(repo: string, revision: string | undefined, hub?: HubClient): Promise<TextTokenizer> {
  if (!hub?.hasToken) return tokenizerFromHub(repo, { revision });
  const json = await hub.text(repo, revision ?? 'main', 'tokenizer.json');
  if (json === null) throw new EngineError('invalid-model', `${repo} has no tokenizer.json on the hub.`, { file: 'tokenizer.json' });
  return tokenizerFromHubFiles(json, await hub.text(repo, revision ?? 'main', 'tokenizer_config.json'));
}

export class Tokenizers {
  private readonly loaded = new Map<string, Promise<TextTokenizer>>();

  /** `hub`: a hub client with the access token as it is now. */
  constructor(private readonly origin: string, private readonly hub: () => HubClient) {}

  of(model: ModelSource): Promise<TextTokenizer> {
    const key = model.kind === 'preset' ? `preset:${model.name}` : model.kind === 'hub' ? `hub:${model.id}` : `local:${model.files.map((f) => f.name).join(',')}`;
    let loading = this.loaded.get(key);
    if (!loading) {
      loading = this.load(model);
      this.loaded.set(key, loading);
      loading.catch(() => this.loaded.delete(key));
    }
    return loading;
  }

  private async load(model: ModelSource): Promise<TextTokenizer> {
    if (model.kind === 'preset') {
      const preset = presetNamed(model.name);
      if (!preset) throw new EngineError('invalid-model', `unknown preset "${model.name}"`);
      return presetTokenizer(preset, this.origin, this.hub());
    }
    if (model.kind === 'hub') return hubTokenizer(model.id, model.revision, this.hub());
    const byName = (name: string) => model.files.find((f) => f.name === name || f.webkitRelativePath.endsWith(`/${name}`));
    const json = byName('tokenizer.json');
    if (!json) throw new EngineError('invalid-model', 'The model folder has no tokenizer.json: add it to the folder and choose the folder again.', { file: 'tokenizer.json' });
    const config = byName('tokenizer_config.json');
    return tokenizerFromFiles(await json.text(), config ? await config.text() : null);
  }
}
