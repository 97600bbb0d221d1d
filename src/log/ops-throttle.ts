/**
 * An operational line that anyone on the network can cause (an unknown cancel key, a startup
 * packet that is not one) is said at most once a second; the next line that is said counts the
 * ones left out (`suppressed=N`). Nothing is lost silently, and a flood of bad connections cannot
 * turn stderr into the bottleneck.
 */
import type { OpsFields } from './ops';

export class ThrottledLine {
  private lastAt = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly say: (msg: string, fields: OpsFields) => void,
    private readonly msg: string,
    private readonly everyMs = 1000,
  ) {}

  log(fields: OpsFields, now = Date.now()): void {
    if (now - this.lastAt < this.everyMs) {
      this.suppressed++;
      return;
    }
    this.lastAt = now;
    const n = this.suppressed;
    this.suppressed = 0;
    this.say(this.msg, n > 0 ? { ...fields, suppressed: n } : fields);
  }
}
