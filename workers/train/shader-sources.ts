/** The optimizer's WGSL as strings, through Vite's `?raw` imports (page, worker, CLI, tests). */
import adamw from '../../shaders/adamw.wgsl?raw';
import sumsq from '../../shaders/reduce-sumsq.wgsl?raw';
import finalize from '../../shaders/reduce-norm-finalize.wgsl?raw';
import type { OptimizerShaders } from './optimizer';

export const OPTIMIZER_SHADERS: OptimizerShaders = { adamw, sumsq, finalize };
