/**
 * PostgreSQL protocol message type bytes and startup codes.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */

/** Messages sent by the frontend (client). */
export const Frontend = {
  Bind: 0x42, // 'B'
  Close: 0x43, // 'C'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyFail: 0x66, // 'f'
  Describe: 0x44, // 'D'
  Execute: 0x45, // 'E'
  Flush: 0x48, // 'H'
  FunctionCall: 0x46, // 'F'
  Parse: 0x50, // 'P'
  Password: 0x70, // 'p' (also SASLInitialResponse, SASLResponse, GSSResponse)
  Query: 0x51, // 'Q'
  Sync: 0x53, // 'S'
  Terminate: 0x58, // 'X'
} as const;

/** Messages sent by the backend (server). */
export const Backend = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  BindComplete: 0x32, // '2'
  CloseComplete: 0x33, // '3'
  CommandComplete: 0x43, // 'C'
  CopyBothResponse: 0x57, // 'W'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyInResponse: 0x47, // 'G'
  CopyOutResponse: 0x48, // 'H'
  DataRow: 0x44, // 'D'
  EmptyQueryResponse: 0x49, // 'I'
  ErrorResponse: 0x45, // 'E'
  NegotiateProtocolVersion: 0x76, // 'v'
  NoData: 0x6e, // 'n'
  NoticeResponse: 0x4e, // 'N'
  NotificationResponse: 0x41, // 'A'
  ParameterDescription: 0x74, // 't'
  ParameterStatus: 0x53, // 'S'
  ParseComplete: 0x31, // '1'
  PortalSuspended: 0x73, // 's'
  ReadyForQuery: 0x5a, // 'Z'
  RowDescription: 0x54, // 'T'
} as const;

/** Request codes carried by untyped startup-phase packets. */
export const StartupCode = {
  ProtocolV3: 0x00030000, // 3.0
  CancelRequest: 80877102, // 1234.5678
  SSLRequest: 80877103, // 1234.5679
  GSSENCRequest: 80877104, // 1234.5680
} as const;

/** ReadyForQuery transaction status bytes. */
export const TxStatus = {
  Idle: 0x49, // 'I'
  InTransaction: 0x54, // 'T'
  Failed: 0x45, // 'E'
} as const;
export type TxStatus = (typeof TxStatus)[keyof typeof TxStatus];

/** SQLSTATE codes the proxy itself raises. */
export const SqlState = {
  ConnectionFailure: '08006',
  ProtocolViolation: '08P01',
  SqlclientUnableToEstablishSqlconnection: '08001',
  TooManyConnections: '53300',
  /** configuration_limit_exceeded: a query over its rate limit (src/limits/rate-gate.ts). */
  ConfigurationLimitExceeded: '53400',
  AdminShutdown: '57P01',
  InvalidAuthorizationSpecification: '28000',
  FeatureNotSupported: '0A000',
  QueryCanceled: '57014',
} as const;
export type SqlState = (typeof SqlState)[keyof typeof SqlState];

/**
 * PostgreSQL refuses a startup packet whose body (what follows the length word) is longer than
 * this (MAX_STARTUP_PACKET_LENGTH), or shorter than the 4-byte request code.
 */
export const MAX_STARTUP_PACKET_LENGTH = 10000;
/** The same limits on the whole packet, length word included, as the framer counts it. */
export const MAX_STARTUP_PACKET_BYTES = MAX_STARTUP_PACKET_LENGTH + 4;
