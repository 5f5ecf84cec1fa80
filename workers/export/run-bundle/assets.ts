/**
 * The files of a run bundle that do not come from the run's tensors: continue.py, the accelerate
 * configurations, the recipes for other tools and the bundle's README, made for one run.
 */
import type { RunJson } from './run-json';

export interface BundleAsset {
  /** Path inside the bundle, e.g. `continue.py`, `accelerate/ddp.yaml`, `recipes/axolotl.yaml`. */
  path: string;
  text: string;
}

export function bundleAssets(run: RunJson): BundleAsset[] {
  void run;
  return [];
}
