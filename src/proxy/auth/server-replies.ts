/**
 * The ErrorResponses a server-side exchange ends with, in PostgreSQL's words and SQLSTATEs.
 * @see src/backend/libpq/auth.c, auth-scram.c (PostgreSQL 15)
 */
import { errorResponse } from '../../protocol/error-response.js';

/** Appendix A: 28P01 invalid_password, 08P01 protocol_violation, 0A000 feature_not_supported. */
export const AUTH_SQLSTATE = {
  INVALID_PASSWORD: '28P01',
  PROTOCOL_VIOLATION: '08P01',
  FEATURE_NOT_SUPPORTED: '0A000',
} as const;

export function passwordFailed(user: string): Buffer {
  return errorResponse({
    severity: 'FATAL',
    code: AUTH_SQLSTATE.INVALID_PASSWORD,
    message: `password authentication failed for user "${user}"`,
  });
}

export function protocolViolation(message: string, detail?: string): Buffer {
  return errorResponse({
    severity: 'FATAL',
    code: AUTH_SQLSTATE.PROTOCOL_VIOLATION,
    message,
    ...(detail === undefined ? {} : { detail }),
  });
}

export const malformedScram = (detail: string): Buffer =>
  protocolViolation('malformed SCRAM message', detail);

export function featureNotSupported(message: string): Buffer {
  return errorResponse({ severity: 'FATAL', code: AUTH_SQLSTATE.FEATURE_NOT_SUPPORTED, message });
}
