/**
 * The files of a run bundle that do not come from the run's tensors: continue.py, the accelerate
 * configurations, the recipes for other tools and the bundle's README, made for one run.
 * continue.py and the accelerate files are sources next to this module, read as text through
 * Vite's `?raw` imports (page, worker, CLI and tests alike); the rest is written from run.json.
 */
import continuePy from './continue.py?raw';
import ddpYaml from './accelerate/ddp.yaml?raw';
import fsdpYaml from './accelerate/fsdp.yaml?raw';
import { bundleReadme } from './bundle-readme';
import { axolotlRecipe, llamafactoryDatasetInfo, llamafactoryRecipe, trlSftRecipe } from './recipes';
import { RUN_BUNDLE_FORMAT, RUN_BUNDLE_VERSION, type RunJson } from './run-json';

export interface BundleAsset {
  /** Path inside the bundle, e.g. `continue.py`, `accelerate/ddp.yaml`, `recipes/axolotl.yaml`. */
  path: string;
  text: string;
}

export function bundleAssets(run: RunJson): BundleAsset[] {
  if (run.format !== RUN_BUNDLE_FORMAT || run.version !== RUN_BUNDLE_VERSION) {
    throw new Error(`run.json: format ${JSON.stringify(run.format)} version ${run.version}; the bundle's scripts are written for ${RUN_BUNDLE_FORMAT} version ${RUN_BUNDLE_VERSION}`);
  }
  return [
    { path: 'README.md', text: bundleReadme(run) },
    { path: 'continue.py', text: continuePy },
    { path: 'accelerate/ddp.yaml', text: ddpYaml },
    { path: 'accelerate/fsdp.yaml', text: fsdpYaml },
    { path: 'recipes/trl-sft.yaml', text: trlSftRecipe(run) },
    { path: 'recipes/llamafactory.yaml', text: llamafactoryRecipe(run) },
    { path: 'recipes/dataset_info.json', text: llamafactoryDatasetInfo(run) },
    { path: 'recipes/axolotl.yaml', text: axolotlRecipe(run) },
  ];
}
