// The admin dashboard page: one self-contained HTML file (inline CSS and JS, no external
// resources). tsc does not copy it, so `make build` puts a copy next to the compiled module
// (dist/admin/) and `make compile` one into build/src/admin/.

import { readFileSync } from 'fs';
import * as path from 'path';

let page: Buffer | undefined;

/** dashboard.html from this module's directory, read on the first call and kept. */
export function dashboardHtml(): Buffer {
  if (page === undefined) {
    const file = path.join(__dirname, 'dashboard.html');
    try {
      page = readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`dashboard.html missing next to ${__filename}: run make build`);
      }
      throw e;
    }
  }
  return page;
}
