#include "cluster/openssl_errors.hpp"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

// See openssl_errors.hpp. The signatures are libssl's (declared in <openssl/ssl.h>).
extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto next = reinterpret_cast<int (*)(SSL*, void*, int)>(dlsym(RTLD_NEXT, "SSL_read"));
  ERR_clear_error();
  return next(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto next = reinterpret_cast<int (*)(SSL*, const void*, int)>(dlsym(RTLD_NEXT, "SSL_write"));
  ERR_clear_error();
  return next(ssl, buf, num);
}

int SSL_connect(SSL* ssl) {
  static const auto next = reinterpret_cast<int (*)(SSL*)>(dlsym(RTLD_NEXT, "SSL_connect"));
  ERR_clear_error();
  return next(ssl);
}

int SSL_accept(SSL* ssl) {
  static const auto next = reinterpret_cast<int (*)(SSL*)>(dlsym(RTLD_NEXT, "SSL_accept"));
  ERR_clear_error();
  return next(ssl);
}

}  // extern "C"

namespace mercato::cluster {

bool openssl_error_queue_cleared_per_call() {
  // What a shared library such as libcaf_openssl gets when it looks the names up.
  const auto resolves_here = [](const char* name, void* ours) { return dlsym(RTLD_DEFAULT, name) == ours; };
  return resolves_here("SSL_read", reinterpret_cast<void*>(&SSL_read)) &&
         resolves_here("SSL_write", reinterpret_cast<void*>(&SSL_write)) &&
         resolves_here("SSL_connect", reinterpret_cast<void*>(&SSL_connect)) &&
         resolves_here("SSL_accept", reinterpret_cast<void*>(&SSL_accept));
}

}  // namespace mercato::cluster
