/** A setting that is wrong, named by its public name (`--max-connections`, `cache-rules`, `config`). */
export class ConfigError extends Error {
  readonly code = 'PGSCRIBE_CONFIG';
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`${key}: ${message}`);
  }
}
