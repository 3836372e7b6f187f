/** The Postgres wire protocol, as much of it as the proxy needs: pure functions, no sockets. */
export * from './startup.js';
export * from './startup-framer.js';
export * from './error-response.js';
export * from './backend-tracker.js';
export * from './idle-tracker.js';
export * from './startup-replies.js';
export * from './message-framer.js';
export * from './pool-messages.js';
