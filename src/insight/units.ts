/** Units of the numbers insight shows (shared by the digest and table views). */

/** Milliseconds shown to the microsecond: JSON readers get 224.571, not 224.57106999999849. */
export function usRound(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
