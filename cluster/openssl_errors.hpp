#pragma once
// caf_openssl 0.17.6 asks SSL_get_error() what an SSL_read/SSL_write/SSL_connect/SSL_accept that returned
// <= 0 means without emptying the thread's OpenSSL error queue first, and it never empties it afterwards
// either (its get_ssl_error() only runs inside log statements, which Debian's build compiles out). Once
// one connection fails on the middleman's I/O thread (a peer with a bad certificate, a redundant BASP
// connection closed, any TLS error), the error stays queued, and the next read on a healthy connection
// that merely has no data yet (SSL_ERROR_WANT_READ) is reported as SSL_ERROR_SSL: CAF closes that
// connection and every proxy of the peer dies (remote_link_unreachable).
//
// openssl_errors.cpp defines those four functions in this program: each empties the calling thread's
// error queue (what OpenSSL's documentation requires before the call) and calls libssl's. They take the
// place of libssl's for the whole process (the executable's exported symbols come first in the dynamic
// linker's lookup), which is harmless for other OpenSSL users.

namespace mercato::cluster {

// True when the four wrappers are the ones the process calls (the node refuses to start TLS otherwise).
bool openssl_error_queue_cleared_per_call();

}  // namespace mercato::cluster
