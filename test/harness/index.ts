/** The integration-test harness: real etcd, PostgreSQL, Patroni and HAProxy on loopback ports. */
export * from './cleanup.js';
export * from './dns.js';
export * from './etcd.js';
export * from './haproxy.js';
export * from './os-user.js';
export * from './patroni.js';
export * from './ports.js';
export * from './postgres.js';
export * from './processes.js';
export * from './relay.js';
export * from './temp-dir.js';
export * from './wait-for.js';
export * from './proxy-process.js';
export * from './sanitizer.js';
export * from './certificates.js';
export * from './pgbench.js';
export * from './drivers.js';
