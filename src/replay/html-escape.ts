/**
 * HTML escaping for the replay report (report-html.ts, svg-chart.ts). Every string the report
 * holds came from a log a user's clients wrote (SQL, error messages, file names): each one goes
 * through esc() before it reaches the page, in text and in attribute values alike. Escaping the
 * quotes too means the same function is safe in either place, so no caller has to choose.
 */

const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ENTITY[c]!);
}
