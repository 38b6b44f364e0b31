// Package service is the Dovecot 2.3 master-service side of a process
// that a Dovecot master starts as one of its services (`service NAME {
// executable = ... }`), as Dovecot's src/lib-master does for its own
// processes: the environment the master passes (Env: GENERATION,
// CLIENT_LIMIT, SOCKET_COUNT, RESTRICT_*), the listeners on fd 7 onwards,
// the status pipe on fd 5 (available_count), the master-death pipe on fd
// 6, the log-pipe format on fd 2 (LogHandler, Fatal), the privilege drop
// to the service's user (Service.DropPrivileges), the address-space
// floor a Go program needs under vsz_limit (CheckAddressSpace), and the
// exit statuses the master understands (FatalDefault, FatalOutOfMem).
//
// It knows nothing of what the process serves: Service.Run hands the
// listeners to a Serve function. `tcpwrapd --dovecot` uses it
// (docs/dovecot-managed.md).
package service
