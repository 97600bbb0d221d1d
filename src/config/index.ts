/**
 * Settings: the nested Config (types.ts), the table of public names (settings.ts), the command
 * line and config file (command-line.ts), --help and --check (help.ts), and the checks across
 * settings (checks.ts).
 */
export { compileRules } from './cache-rules';
export { checkEnvironment, isLoopback } from './checks';
export { fromFile, parseCommandLine, type Command } from './command-line';
export { ConfigError } from './config-error';
export { cacheMode, describe, helpText, invalidationMode } from './help';
export { formatHostPort, parseHostPort } from './parsers';
export { SETTINGS, defaults, setAt, valueAt, type ConfigPath, type SettingName } from './settings';
export * from './types';
