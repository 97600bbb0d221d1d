/** The checker's counters: reads per template, writes per plan, state changes, errors, violations. */

export type Counts = Record<string, number>;

function inc(c: Counts, k: string, n = 1): void {
  c[k] = (c[k] ?? 0) + n;
}

export class Tally {
  reads = 0;
  readsByTemplate: Counts = {};
  readErrors: Counts = {};
  writesCommitted = 0;
  writesFailed = 0;
  writesByName: Counts = {};
  writeFailures: Counts = {};
  settingOps: Counts = {};
  settingErrors: Counts = {};
  adminOps: Counts = {};
  sessions = 0;
  errors: Counts = {};
  violations: Counts = {};
  /** Violations by kind and read template: where they come from. */
  violationsByTemplate: Counts = {};

  read(template: string, errorCode: string | null): void {
    this.reads++;
    inc(this.readsByTemplate, template);
    if (errorCode !== null) inc(this.readErrors, `${template} ${errorCode}`);
  }

  write(name: string, ok: boolean, why: string | null): void {
    inc(this.writesByName, name);
    if (ok) this.writesCommitted++;
    else {
      this.writesFailed++;
      inc(this.writeFailures, `${name} ${why ?? '?'}`);
    }
  }

  setting(name: string, errorCode: string | null): void {
    inc(this.settingOps, name);
    if (errorCode !== null) inc(this.settingErrors, `${name} ${errorCode}`);
  }

  admin(name: string): void {
    inc(this.adminOps, name);
  }

  count(what: string, detail: string): void {
    inc(this.errors, `${what}: ${detail}`);
  }

  violation(kind: string, template: string): void {
    inc(this.violations, kind);
    inc(this.violationsByTemplate, `${kind} <- ${template}`);
  }

  get totalViolations(): number {
    return Object.values(this.violations).reduce((a, b) => a + b, 0);
  }
}
