/**
 * The rows lm_head computes in training and evaluation. A row whose shifted target is -100 (a
 * prompt token, padding, a row's last position) adds nothing to the loss and gets no gradient,
 * so only runs of scored rows go through the head and the cross-entropy: on DS-1000-style data,
 * where the prompt is most of the row, that is most of the head's work saved. Gaps shorter than
 * BRIDGE_ROWS are bridged (their rows score 0, as every ignored row does), so a conversation's
 * short turns stay a few dispatches.
 */
export const BRIDGE_ROWS = 16;

/** Half-open [start, end) row ranges covering every row with a target ≥ 0, in order. */
export function scoredRuns(targets: ArrayLike<number>, bridge = BRIDGE_ROWS): [number, number][] {
  const runs: [number, number][] = [];
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] < 0) continue;
    const last = runs[runs.length - 1];
    if (last && i - last[1] < bridge) last[1] = i + 1;
    else runs.push([i, i + 1]);
  }
  return runs;
}
