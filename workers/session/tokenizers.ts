/**
 * The tokenizer of the model a run trains, by model source: a preset's (the demo's is served
 * by the studio itself), a hub repo's, or a dropped folder's tokenizer.json. Loaded once per model.
 */
import { presetNamed, type Preset } from '../load/presets';
import type { ModelSource } from '../protocol';
import { tokenizerFromFiles, tokenizerFromHub, tokenizerFromUrl, type TextTokenizer } from '../tokenizer';
import { EngineError } from '../errors';

/** A preset's tokenizer; `origin` is where the studio is served (the demo's files live under it). */
export function presetTokenizer(preset: Preset, origin: string): Promise<TextTokenizer> {
  const location = preset.tokenizer;
  return location.kind === 'url' ? tokenizerFromUrl(new URL(location.baseUrl, origin).href) : tokenizerFromHub(location.repo, { revision: location.revision });
}

export class Tokenizers {
  private readonly loaded = new Map<string, Promise<TextTokenizer>>();

  constructor(private readonly origin: string) {}

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
      return presetTokenizer(preset, this.origin);
    }
    if (model.kind === 'hub') return tokenizerFromHub(model.id, { revision: model.revision });
    const byName = (name: string) => model.files.find((f) => f.name === name || f.webkitRelativePath.endsWith(`/${name}`));
    const json = byName('tokenizer.json');
    if (!json) throw new EngineError('invalid-model', 'The model folder has no tokenizer.json: add it to the folder and choose the folder again.', { file: 'tokenizer.json' });
    const config = byName('tokenizer_config.json');
    return tokenizerFromFiles(await json.text(), config ? await config.text() : null);
  }
}
